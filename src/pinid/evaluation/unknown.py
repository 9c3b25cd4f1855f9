"""Unknown users: pins of people the model never saw must come out "unknown".

The users are shuffled (seeded) into up to five groups, and each group in turn is held out
whole, so every user is unknown once and the figures do not hang on which few users one draw
holds out. Alternate users of the shuffled order serve validation or test. In each rotation the
model's views are refitted without the held-out users -- on the others' training pins to score
their validation pins and the validation users' pins, on their training and validation pins
(as the model itself is fitted) to score their test pins and the test users' pins. The re-ranker
and temperature are the fitted model's: functions of candidate features that name no user.

The answer is "unknown" when the top calibrated probability is below a threshold T: the lowest
at which the pooled validation side rejects ``REJECTION_TARGET`` of the unknown users' pins (the
operating point users are promised: about nine in ten pins of strangers refused) or, where no
T below 1 does (strangers' answers as confident as known users'), the T of the best mean of
known-user accuracy and unknown-user rejection. The pooled test side measures it.
"""

from __future__ import annotations

import copy

import numpy as np

from pinid.data import Split
from pinid.errors import DataError
from pinid.features.dataset import PreparedData
from pinid.models.final_model import FinalModel

ROTATIONS = 5
REJECTION_TARGET = 0.9
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


def _without(model: FinalModel, data: PreparedData, pin_ids: set[str]) -> FinalModel:
    """``model`` with its views refitted on ``pin_ids`` alone."""
    X, y = data.part(pin_ids)
    partial = copy.copy(model)
    partial.views_ = model._fit_views(X, np.asarray(y))
    partial.classes_ = partial.views_.base.classes_
    return partial


def _pins_of(author: dict[str, str], users: set[str]) -> set[str]:
    return {pin for pin, user in author.items() if user in users}


def _answers(model: FinalModel, data: PreparedData, ids: set[str]) -> tuple[np.ndarray, ...]:
    """Top calibrated probability of each pin in ``ids``, and whether its top user is right."""
    if not ids:
        return np.zeros(0), np.zeros(0, bool)
    X, y = data.part(ids)
    ranked = model.rank(X)
    return ranked.probability[:, 0], model.classes_[ranked.users[:, 0]] == np.asarray(y)


def unknown_users(data: PreparedData, split: Split, model: FinalModel, seed: int) -> dict:
    """The rejection curve and threshold of ``model`` (fitted on ``data``, C as chosen)."""
    users = sorted(data.dataset.users)
    if len(users) < 3:
        return {"skipped": f"{len(users)} users: too few to hold any out"}
    order = [str(u) for u in np.random.default_rng(seed).permutation(users)]
    groups = np.array_split(np.array(order, dtype=object), min(ROTATIONS, len(users)))
    role = {u: "validation" if i % 2 == 0 else "test" for i, u in enumerate(order)}
    author = {p.pin_id: p.user for p in data.dataset.pins}
    pooled = {side: ([], [], []) for side in ("validation", "test")}  # known, correct, unknown
    for group in groups:
        held = set(group)
        held_pins = _pins_of(author, held)
        for side, part, fitted_on in (("validation", "val", ("train",)),
                                      ("test", "test", ("train", "val"))):  # fmt: skip
            fit_ids = {i for p in fitted_on for i in split.ids(p)} - held_pins
            try:
                partial = _without(model, data, fit_ids)
            except DataError as exc:  # a small dataset without the held-out users may not fit
                return {"skipped": f"could not fit without the held-out users: {exc}"}
            known, correct, unknown = pooled[side]
            confidence, right = _answers(partial, data, split.ids(part) - held_pins)
            known.append(confidence)
            correct.append(right)
            who = {u for u in held if role[u] == side}
            unknown.append(_answers(partial, data, _pins_of(author, who))[0])
    val, test = (
        _rates((np.concatenate(known), np.concatenate(correct)), np.concatenate(unknown))
        for known, correct, unknown in (pooled["validation"], pooled["test"])
    )
    reaches = val["unknown_rejected"][:-1] >= REJECTION_TARGET  # 1.0 would refuse everyone
    balanced = (val["known_accuracy"][:-1] + val["unknown_rejected"][:-1]) / 2
    best = int(np.argmax(reaches if reaches.any() else balanced))  # the lowest such T
    return {
        "rotations": len(groups),
        "held_out_users": {
            side: sorted(u for u, r in role.items() if r == side) for side in ("validation", "test")
        },
        "rejection_target": REJECTION_TARGET,
        "target_reached": bool(reaches.any()),
        "threshold": float(THRESHOLDS[best]),
        "validation_at_threshold": {name: float(values[best]) for name, values in val.items()},
        "test_at_threshold": {name: float(values[best]) for name, values in test.items()},
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
