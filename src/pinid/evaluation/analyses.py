"""The paper's analyses of a run (tables 1 and 3, figures 2, 3 and 5) and two beyond it.

Everything is computed once, here, and stored in ``results.json`` under ``"analyses"``; the
report only draws what it finds there.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter

import numpy as np
from scipy.stats import pearsonr
from sklearn.decomposition import PCA, TruncatedSVD

from pinid.evaluation.calibration import reliability
from pinid.features.dataset import PreparedData
from pinid.features.text import tokenize
from pinid.models.paper_model import PaperModel

N_COMPONENTS = 10
MAX_POINTS = 2000


def _stats(values: list[int]) -> dict[str, float]:
    return {
        "min": float(min(values)),
        "max": float(max(values)),
        "median": float(statistics.median(values)),
        "mean": float(statistics.fmean(values)),
    }


def frequent_words(data: PreparedData, seed: int, n_users: int = 5, n_words: int = 5) -> dict:
    """Table 1: the most frequent words of random users, counted in pins (not occurrences)."""
    users = data.dataset.users
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(users, size=min(n_users, len(users)), replace=False).tolist())
    table = {}
    for user in chosen:
        counts = Counter(
            word
            for pin in data.dataset.pins
            if pin.user == user
            for word in set(tokenize(pin.text))
        )
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n_words]
        table[user] = [[word, count] for word, count in ranked]
    return {"users": chosen, "words": table}


def words_per_pin(data: PreparedData) -> dict:
    """Figure 2: words per pin (whitespace-separated, as written) per user and corpus-wide."""
    per_user: dict[str, list[int]] = {}
    for pin in data.dataset.pins:
        per_user.setdefault(pin.user, []).append(len(pin.text.split()))
    every = [n for counts in per_user.values() for n in counts]
    return {
        "per_user": {user: _stats(counts) for user, counts in sorted(per_user.items())},
        "corpus": _stats(every),
    }


def projections(data: PreparedData, model: PaperModel, seed: int) -> dict:
    """Figure 3: both modalities on their first two principal components, and the variance
    explained by ten (TruncatedSVD for the sparse tf-idf, PCA for the CNN features)."""
    text = model.text_vectors(data.features.texts)
    images = data.features.images
    k_text = max(1, min(N_COMPONENTS, text.shape[1] - 1, text.shape[0] - 1))
    k_image = max(1, min(N_COMPONENTS, images.shape[1], images.shape[0]))
    text_svd = TruncatedSVD(n_components=k_text, random_state=seed).fit(text)
    image_pca = PCA(n_components=k_image, random_state=seed).fit(images)
    labels = data.labels()
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(labels), size=min(MAX_POINTS, len(labels)), replace=False))
    users = data.dataset.users
    out = {"users_of_points": [users.index(u) for u in labels[rows]]}
    for name, reducer, matrix in (
        ("text", text_svd, text[rows]),
        ("image", image_pca, images[rows]),
    ):
        points = reducer.transform(matrix)[:, :2]
        if points.shape[1] < 2:
            points = np.hstack([points, np.zeros((len(points), 1))])
        out[name] = {
            "explained_variance": [round(float(v), 5) for v in reducer.explained_variance_ratio_],
            "explained_variance_total": round(float(reducer.explained_variance_ratio_.sum()), 4),
            "points": np.round(points, 4).tolist(),
        }
    return out


def lowest_and_highest(data: PreparedData, per_user_f1: dict[str, float], n: int = 5) -> dict:
    """Table 3: users with the lowest and highest F1, their median words per pin, and the
    Pearson correlation between F1 and median pin length over all users."""
    medians = {u: s["median"] for u, s in words_per_pin(data)["per_user"].items()}
    ranked = sorted(per_user_f1, key=lambda u: (per_user_f1[u], u))
    row = lambda u: {"user": u, "median_words": medians[u], "f1": per_user_f1[u]}  # noqa: E731
    f1 = np.array([per_user_f1[u] for u in ranked])
    length = np.array([medians[u] for u in ranked])
    constant = f1.std() == 0 or length.std() == 0
    return {
        "lowest": [row(u) for u in ranked[:n]],
        "highest": [row(u) for u in reversed(ranked[-n:])],
        "pearson_f1_median_words": None if constant else float(pearsonr(f1, length)[0]),
    }


def shared_images(data: PreparedData) -> dict:
    """The share of distinct images (by content hash) that two or more users posted."""
    owners: dict[str, set[str]] = {}
    for pin in data.dataset.pins:
        digest = hashlib.sha256(pin.image.read_bytes()).hexdigest()
        owners.setdefault(digest, set()).add(pin.user)
    shared = sum(len(users) >= 2 for users in owners.values())
    return {"n_images": len(owners), "shared_by_2plus_users": shared, "share": shared / len(owners)}


def confused_pairs(
    y_true: np.ndarray, predicted: np.ndarray, classes: np.ndarray, n: int = 10
) -> list:
    """The user pairs the final model confuses most on the test pins (true -> predicted)."""
    pairs = Counter(
        (str(classes[t]), str(classes[p])) for t, p in zip(y_true, predicted, strict=True) if t != p
    )
    ranked = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [{"true": t, "predicted": p, "count": c} for (t, p), c in ranked]


def analyse(
    data: PreparedData,
    model: PaperModel,
    y_true: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    per_user_f1: dict[str, float],
    seed: int,
) -> dict:
    """Every analysis of the report, from the run's data and its final model's answers (class
    indices) and their confidence."""
    return {
        "table1": frequent_words(data, seed),
        "words_per_pin": words_per_pin(data),
        "projections": projections(data, model, seed),
        "table3": lowest_and_highest(data, per_user_f1),
        "shared_images": shared_images(data),
        "confused_pairs": confused_pairs(y_true, predicted, model.classes_),
        "reliability": reliability(confidence, predicted == y_true),
    }
