"""The paper's metrics: accuracy, macro-F1, recall@10, and F1 per user."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

RECALL_K = 10


def evaluate_ranking(
    y_true: np.ndarray, ranking: np.ndarray, classes: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """Metrics of a ranking (pins x candidates, class indices, best first) and per-user F1."""
    labels = np.arange(len(classes))
    y_pred = ranking[:, 0]
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "recall_at_10": float(np.mean((ranking[:, :RECALL_K] == y_true[:, None]).any(axis=1))),
    }
    per_user = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return metrics, {str(c): float(f) for c, f in zip(classes, per_user, strict=True)}
