"""The 4:1:1 train / validation / test split, stratified per user, seeded and saved.

Determinism does not rest on dict order or ``hash()``: each user's pins are sorted by id and
shuffled by a generator seeded from ``seed`` and the sha256 of the user's name, so the split of
one user never depends on which other users are present.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pinid._atomic import atomic_write_text
from pinid.data.pins import MIN_PINS_TO_SPLIT, Dataset
from pinid.errors import DataError

PARTS = ("train", "val", "test")
PROPORTIONS = (4, 1, 1)


@dataclass(frozen=True)
class Split:
    """``assignment`` maps every pin_id to ``"train"``, ``"val"`` or ``"test"``."""

    assignment: dict[str, str]
    seed: int

    def ids(self, part: str) -> set[str]:
        return {pin_id for pin_id, p in self.assignment.items() if p == part}


def _user_generator(user: str, seed: int) -> np.random.Generator:
    digest = int.from_bytes(hashlib.sha256(user.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, digest]))


def part_sizes(n: int) -> tuple[int, int, int]:
    """Train, validation and test counts for a user with ``n`` pins (600 -> 400/100/100)."""
    if n < MIN_PINS_TO_SPLIT:
        raise ValueError(f"{n} pins cannot be split in three")
    total = sum(PROPORTIONS)
    n_val = max(1, round(n * PROPORTIONS[1] / total))
    n_test = max(1, round(n * PROPORTIONS[2] / total))
    return n - n_val - n_test, n_val, n_test


def make_split(dataset: Dataset, seed: int = 0) -> Split:
    """Split every user's pins 4:1:1 (users with too few pins must be dropped first)."""
    by_user: dict[str, list[str]] = {}
    for pin in dataset.pins:
        by_user.setdefault(pin.user, []).append(pin.pin_id)
    assignment: dict[str, str] = {}
    for user in sorted(by_user):
        ids = sorted(by_user[user])
        if len(ids) < MIN_PINS_TO_SPLIT:
            raise DataError(f"{dataset.source}: user {user!r} has {len(ids)} pin(s); need 3")
        order = _user_generator(user, seed).permutation(len(ids))
        n_train, n_val, _ = part_sizes(len(ids))
        for rank, index in enumerate(order):
            part = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            assignment[ids[index]] = part
    return Split(assignment, seed)


def save_split(split: Split, path: str | Path) -> None:
    payload = {"seed": split.seed, "proportions": list(PROPORTIONS), "assignment": split.assignment}
    atomic_write_text(path, json.dumps(payload, sort_keys=True, indent=0) + "\n")


def load_split(path: str | Path) -> Split:
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        assignment = payload["assignment"]
        seed = int(payload["seed"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a pinid split file ({exc})") from None
    if not isinstance(assignment, dict) or not set(assignment.values()) <= set(PARTS):
        raise DataError(f"{path}: assignment must map pin ids to train/val/test")
    return Split({str(k): str(v) for k, v in assignment.items()}, seed)


def split_for(dataset: Dataset, split_file: Path) -> Split:
    """A saved split, restricted to the dataset's pins, every one of which it must cover."""
    split = load_split(split_file)
    pin_ids = {p.pin_id for p in dataset.pins}
    missing = pin_ids - set(split.assignment)
    if missing:
        raise DataError(
            f"{split_file}: split does not cover {len(missing)} pin(s) of {dataset.source}, "
            f"e.g. {sorted(missing)[0]!r}"
        )
    return Split({k: v for k, v in split.assignment.items() if k in pin_ids}, split.seed)


def choose_split(dataset: Dataset, saved: Path, seed: int, split_file: Path | None = None) -> Split:
    """``split_file`` if given (it must cover every pin), else the run folder's saved split
    when it fits the data and seed, else a new one."""
    pin_ids = {p.pin_id for p in dataset.pins}
    if split_file is not None:
        split = split_for(dataset, split_file)
    elif (
        saved.exists()
        and (old := load_split(saved)).seed == seed
        and set(old.assignment) == pin_ids
    ):
        split = old
    else:
        split = make_split(dataset, seed)
    return split
