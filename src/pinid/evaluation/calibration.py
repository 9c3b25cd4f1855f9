"""Are the final scores probabilities? Expected calibration error before and after scaling."""

from __future__ import annotations

import numpy as np

from pinid.models.final_model import Ranking
from pinid.models.refinement import Refined
from pinid.models.reranker import calibrated

RELIABILITY_BINS = 10


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = RELIABILITY_BINS) -> dict:
    """Confidence of the top answer, binned, against how often it is right; with the expected
    calibration error (ECE: the bins' |accuracy - confidence| weighted by their pin counts)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            mean_conf, accuracy = float(confidence[mask].mean()), float(correct[mask].mean())
            ece += mask.mean() * abs(mean_conf - accuracy)
            rows.append(
                {"low": edges[b], "high": edges[b + 1], "count": int(mask.sum()),
                 "confidence": mean_conf, "accuracy": accuracy}
            )  # fmt: skip
    return {"bins": rows, "ece": float(ece)}


def calibration_summary(
    y_true: np.ndarray, final: Ranking, paper: Refined, temperature: float
) -> dict:
    """ECE of the paper's score (the top user's share of the refined scores of its top 10),
    of the re-ranker's softmax before temperature scaling, and after it (the final scores)."""
    correct = final.users[:, 0] == y_true
    totals = paper.scores.sum(axis=1)
    share = np.divide(paper.scores[:, 0], totals, out=np.zeros(len(totals)), where=totals > 0)
    return {
        "temperature": temperature,
        "ece_cf_ref": reliability(share, paper.users[:, 0] == y_true)["ece"],
        "ece_before": reliability(calibrated(final.logits, 1.0)[:, 0], correct)["ece"],
        "ece_after": reliability(final.probability[:, 0], correct)["ece"],
    }
