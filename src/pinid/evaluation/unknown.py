"""Unknown users: pins of people the model never saw must come out "unknown".

Whole users are held out (a share of them, seeded); the model is fitted as the final model is,
on the other users' training pins (its temperature on their out-of-fold scores). The answer is
"unknown" when the top calibrated probability is below a threshold T. T is chosen on
validation: known users' validation pins against the pins of half of the held-out users,
maximising the mean of known-user accuracy (a rejected pin counts as wrong) and unknown-user
rejection; the other half and the known users' test pins measure it.
"""

from __future__ import annotations

import numpy as np

from pinid.data import Split
from pinid.errors import DataError
from pinid.features.dataset import PreparedData
from pinid.models.training import fit_identifier

HELD_OUT_SHARE = 0.2
THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)


def _rates(known: tuple[np.ndarray, np.ndarray], unknown: np.ndarray) -> dict[str, np.ndarray]:
    """Per threshold: known pins answered right, known pins accepted, unknown pins rejected."""
    confidence, correct = known
    accepted = confidence[None, :] >= THRESHOLDS[:, None]
    return {
        "known_accuracy": (accepted & correct[None, :]).mean(axis=1),
        "known_accepted": accepted.mean(axis=1),
        "unknown_rejected": (unknown[None, :] < THRESHOLDS[:, None]).mean(axis=1),
    }


def unknown_users(
    data: PreparedData, split: Split, C: dict[str, float], similarity: str, seed: int
) -> dict:
    users = sorted(data.dataset.users)
    rng = np.random.default_rng(seed)
    n_out = max(2, round(HELD_OUT_SHARE * len(users)))
    if len(users) - n_out < 2:
        return {"skipped": f"{len(users)} users: too few to hold any out"}
    held = [str(u) for u in rng.choice(users, n_out, replace=False)]
    unknown_val, unknown_test = set(held[: n_out // 2]), set(held[n_out // 2 :])
    pins = data.dataset.pins
    known = {p.pin_id for p in pins if p.user not in unknown_val | unknown_test}
    try:
        model, _ = fit_identifier(data, known & split.ids("train"), C, similarity)
    except DataError as exc:  # a small dataset without the held-out users may not fit
        return {"skipped": f"could not fit without the held-out users: {exc}"}

    def answers(ids: set[str]) -> tuple[np.ndarray, np.ndarray]:
        X, y = data.part(ids)
        ranked = model.rank(X)
        return ranked.probability[:, 0], model.classes_[ranked.users[:, 0]] == np.asarray(y)

    def unknown_confidence(who: set[str]) -> np.ndarray:
        return answers({p.pin_id for p in pins if p.user in who})[0]

    val = _rates(answers(known & split.ids("val")), unknown_confidence(unknown_val))
    test = _rates(answers(known & split.ids("test")), unknown_confidence(unknown_test))
    balanced = (val["known_accuracy"] + val["unknown_rejected"]) / 2
    best = int(np.argmax(balanced))  # first maximum: the lowest such threshold
    at = {name: float(values[best]) for name, values in test.items()}
    return {
        "held_out_users": {"validation": sorted(unknown_val), "test": sorted(unknown_test)},
        "threshold": float(THRESHOLDS[best]),
        "validation_balanced_accuracy": float(balanced[best]),
        "test_at_threshold": at,
        "test_without_rejection": {name: float(v[0]) for name, v in test.items()},
        "validation_curve": [
            {"threshold": float(t), **{name: float(v[i]) for name, v in val.items()}}
            for i, t in enumerate(THRESHOLDS)
        ],
        "curve": [
            {"threshold": float(t), **{name: float(v[i]) for name, v in test.items()}}
            for i, t in enumerate(THRESHOLDS)
        ],
    }
