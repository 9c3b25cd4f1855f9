"""A synthetic corpus with the shape of the paper's Pinterest data, for speed measurements.

The paper: 117 users, 600 pins each (400 train / 100 validation / 100 test), a 17,145-word
dictionary, 8.5 words per pin on average (median 4), CNN image features. Here: words drawn from
a Zipfian vocabulary mixed with a per-user topic (a Zipfian favourite subset), pin lengths
log-normal with median 4 and mean 8.5; 1280-d non-negative image features around a few
clusters shared between users plus a small per-user offset, so users overlap and accuracy is
far from 100%.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pinid.data import Dataset, Pin, Split
from pinid.features.dataset import PreparedData
from pinid.features.pin_features import PinFeatures

PAPER_USERS = 117
PAPER_PINS_PER_USER = 600
PAPER_VOCABULARY = 17_145
FEATURE_DIM = 1280


@dataclass
class Corpus:
    texts: list[str]
    images: np.ndarray  # (n, 1280) float32
    users: np.ndarray  # (n,) user names
    parts: np.ndarray  # (n,) "train" | "val" | "test"

    def as_pinid(self) -> tuple[PreparedData, Split]:
        """The same pins as pinid's own data structures (images are features, never files)."""
        pins = tuple(
            Pin(f"p{i}", str(u), t, Path(f"/synthetic/{i}.png"))
            for i, (u, t) in enumerate(zip(self.users, self.texts, strict=True))
        )
        data = PreparedData(Dataset(pins, Path("/synthetic"), Path("/synthetic/manifest")),
                            PinFeatures(self.texts, self.images))  # fmt: skip
        return data, Split(
            {p.pin_id: str(part) for p, part in zip(pins, self.parts, strict=True)}, 0
        )

    def shape(self) -> dict:
        lengths = np.array([len(t.split()) for t in self.texts])
        return {
            "users": len(np.unique(self.users)),
            "pins": len(self.texts),
            "train": int((self.parts == "train").sum()),
            "val": int((self.parts == "val").sum()),
            "test": int((self.parts == "test").sum()),
            "words_per_pin_mean": round(float(lengths.mean()), 2),
            "words_per_pin_median": float(np.median(lengths)),
            "distinct_words": len({w for t in self.texts for w in t.split()}),
            "image_dim": int(self.images.shape[1]),
        }


def generate(scale: float = 1.0, users: int = PAPER_USERS, seed: int = 0) -> Corpus:
    """``scale`` times the paper's 70,200 pins, shared equally by ``users`` users (at 117
    users, 600 pins each at scale 1; more users have fewer pins each)."""
    rng = np.random.default_rng(seed)
    per_user = max(6, round(PAPER_USERS * PAPER_PINS_PER_USER * scale / users))
    vocabulary = np.array([f"w{i}" for i in range(PAPER_VOCABULARY)])
    zipf = 1.0 / np.arange(1, PAPER_VOCABULARY + 1) ** 1.07
    zipf /= zipf.sum()
    clusters = rng.gamma(1.0, 1.0, size=(max(8, users // 3), FEATURE_DIM)).astype(np.float32)
    texts, images, names, parts = [], [], [], []
    n_train, n_val = round(per_user * 4 / 6), round(per_user / 6)
    for u in range(users):
        topic = rng.choice(PAPER_VOCABULARY, 400, replace=False, p=zipf)
        topic_p = 1.0 / np.arange(1, 401) ** 0.8
        topic_p /= topic_p.sum()
        lengths = np.rint(rng.lognormal(np.log(4.0), 1.24, per_user)).astype(int)
        mine = rng.choice(len(clusters), 3, replace=False)
        weights = rng.dirichlet(np.ones(3))
        offset = rng.gamma(1.0, 0.35, FEATURE_DIM).astype(np.float32)
        total = int(lengths.sum())
        own = rng.random(total) < 0.35
        words = np.where(
            own,
            topic[rng.choice(400, total, p=topic_p)],
            rng.choice(PAPER_VOCABULARY, total, p=zipf),
        )
        for pin_words in np.split(vocabulary[words], np.cumsum(lengths)[:-1]):
            texts.append(" ".join(pin_words))
        centres = clusters[rng.choice(mine, per_user, p=weights)]
        noise = rng.gamma(1.0, 1.0, (per_user, FEATURE_DIM)).astype(np.float32)
        images.append(0.45 * centres + 0.25 * offset + 0.9 * noise)
        names += [f"user{u:04d}"] * per_user
        parts += ["train"] * n_train + ["val"] * n_val + ["test"] * (per_user - n_train - n_val)
    return Corpus(texts, np.concatenate(images), np.array(names), np.array(parts))
