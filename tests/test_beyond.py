"""Beyond the paper: re-ranker, temperature scaling, calibration error, unknown users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from pinid.data import Dataset, Pin, make_split
from pinid.errors import DataError
from pinid.evaluation.calibration import reliability
from pinid.evaluation.unknown import REJECTION_TARGET, ROTATIONS, THRESHOLDS, unknown_users
from pinid.features.dataset import PreparedData
from pinid.features.pin_features import PinFeatures
from pinid.features.specs import FEATURE_DIM
from pinid.models.final_model import FinalModel
from pinid.models.fits import InProcess
from pinid.models.reranker import Reranker, calibrated, fit_temperature


def test_the_listwise_reranker_learns_which_feature_marks_the_author():
    rng = np.random.default_rng(0)
    n, k = 400, 10
    features = rng.normal(size=(n, k, 3))
    truth = rng.integers(0, k, n)
    features[np.arange(n), truth, 1] += 3.0  # feature 1 is the tell; 0 and 2 are noise
    reranker = Reranker(alpha=1e-3).fit(features.reshape(n * k, 3), truth)
    assert np.argmax(np.abs(reranker.coef_)) == 1 and reranker.coef_[1] > 0
    scores = reranker.decision_function(features.reshape(n * k, 3)).reshape(n, k)
    oracle = features[:, :, 1].argmax(axis=1)  # the best any ranker can do here
    assert (scores.argmax(axis=1) == oracle).mean() > 0.97


def test_temperature_scaling_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=4.0, size=(5000, 10))
    truth = np.array([rng.choice(10, p=p) for p in softmax(logits / 2.5, axis=1)])
    assert fit_temperature(logits, truth) == pytest.approx(2.5, rel=0.1)
    assert fit_temperature(logits, np.full(5000, -1)) == 1.0  # no author among candidates


def test_calibration_error_is_small_for_calibrated_scores_and_large_otherwise():
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.1, 1.0, 20000)
    honest = rng.uniform(size=confidence.size) < confidence
    assert reliability(confidence, honest)["ece"] < 0.02
    assert reliability(confidence, honest & (rng.uniform(size=confidence.size) < 0.5))["ece"] > 0.2
    probabilities = calibrated(rng.normal(size=(5, 10)), 1.7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def _generated(n_users: int = 12, per_user: int = 10, seed: int = 3) -> PreparedData:
    """Users with their own words and image centres, and some shared words and overlap."""
    rng = np.random.default_rng(seed)
    pins, images = [], []
    common = ["photo", "nice", "colour", "design", "art", "free"]
    centres = np.random.default_rng(3).normal(size=(n_users, FEATURE_DIM))  # same users
    for u in range(n_users):
        own = [f"topic{u}word{j}" for j in range(4)]
        for i in range(per_user):
            words = list(rng.choice(own, 2)) + list(rng.choice(common, 2))
            image = Path(f"/nonexistent/u{u}-{i}.png")  # features are given; never read
            pins.append(Pin(f"u{u}-{i}", f"user{u}", " ".join(words), image))
            images.append(centres[u] + rng.normal(scale=2.0, size=FEATURE_DIM))
    dataset = Dataset(tuple(pins), None, None)
    features = PinFeatures([p.text for p in pins], np.abs(np.array(images, np.float32)))
    return PreparedData(dataset, features)


def test_identifier_predicts_its_rankings_top_user_for_any_modalities():
    from pinid.models.paper_model import PaperModel

    data = _generated()
    X, y = data.features, [p.user for p in data.dataset.pins]
    model = PaperModel(C_text=10.0, C_image=1.0).fit(X, y)
    Xh = _generated(seed=4).features
    none = np.zeros(len(Xh), bool)
    mixed = Xh.has_text.copy()
    mixed[::3] = False  # a third image only, a third text only, a third both
    both = PinFeatures(Xh.texts, Xh.images, mixed, Xh.has_image & (np.arange(len(Xh)) % 3 != 1))
    for pins in (Xh, both, PinFeatures(Xh.texts, Xh.images, Xh.has_text, none)):
        answers = model.predict(pins)
        np.testing.assert_array_equal(answers, model.classes_[model.rank(pins).users[:, 0]])
        assert len(set(answers)) > 3  # not one answer for all


def test_reranked_identifier_ranks_candidates_with_probabilities_summing_to_one():
    data = _generated()
    X, y = data.features, [p.user for p in data.dataset.pins]
    model = FinalModel(C_text=10.0, C_char=10.0, C_image=1.0).fit(X, y)
    ranked = model.rank(X)
    assert ranked.users.shape == (len(y), 10)
    assert all(len(set(row)) == 10 for row in ranked.users)  # ten distinct candidates
    np.testing.assert_allclose(ranked.probability.sum(axis=1), 1.0)
    assert (np.diff(ranked.probability, axis=1) <= 1e-12).all()  # best first
    assert (model.predict(X) == np.asarray(y)).mean() > 0.9
    # trained for one modality too: held-out pins given as text only, then as image only
    held = _generated(seed=4)
    Xh, yh = held.features, np.array([p.user for p in held.dataset.pins])
    none = np.zeros(len(yh), bool)
    text_only = PinFeatures(Xh.texts, Xh.images, Xh.has_text, none)
    image_only = PinFeatures(["" for _ in Xh.texts], Xh.images, none, Xh.has_image)
    with_text = PinFeatures(Xh.texts, Xh.images, none, Xh.has_image)  # text given but not used
    assert (model.predict(text_only) == yh).mean() > 0.8
    assert (model.predict(image_only) == yh).mean() > 0.3  # chance: 1/12
    np.testing.assert_array_equal(model.predict(with_text), model.predict(image_only))


def _fitted(data: PreparedData, split) -> FinalModel:
    X, y = data.part(split.ids("train") | split.ids("val"))
    return FinalModel(C_text=10.0, C_char=10.0, C_image=1.0).fit(X, y)


def test_unknown_users_hold_every_user_out_once_and_reach_the_rejection_target():
    data = _generated(n_users=15)
    split = make_split(data.dataset, seed=0)
    result = unknown_users(data, split, _fitted(data, split), 0)
    held = result["held_out_users"]
    assert result["rotations"] == ROTATIONS
    assert sorted(held["validation"] + held["test"]) == sorted(data.dataset.users)
    assert not set(held["validation"]) & set(held["test"])
    assert result["threshold"] in THRESHOLDS
    curve = result["curve"]
    assert len(curve) == len(THRESHOLDS)
    rejected = [p["unknown_rejected"] for p in curve]
    accepted = [p["known_accepted"] for p in curve]
    assert rejected == sorted(rejected) and accepted == sorted(accepted, reverse=True)
    assert curve[0]["unknown_rejected"] == 0.0 and curve[0]["known_accepted"] == 1.0
    # chosen on validation: the lowest threshold below 1 that rejects the target share of
    # strangers, else the best balance (here, separable users make strangers' answers confident)
    validation = result["validation_curve"][:-1]
    reached = [p["unknown_rejected"] >= REJECTION_TARGET for p in validation]
    balanced = [(p["known_accuracy"] + p["unknown_rejected"]) / 2 for p in validation]
    assert result["target_reached"] == any(reached)
    best = reached.index(True) if any(reached) else int(np.argmax(balanced))
    assert result["threshold"] == THRESHOLDS[best] < 1.0
    assert result["validation_at_threshold"] == {
        k: v for k, v in validation[best].items() if k != "threshold"
    }


def test_users_with_one_or_two_training_pins_are_fitted_and_held_out():
    data = _generated(n_users=12, per_user=3)  # one training and one validation pin a user
    split = make_split(data.dataset, seed=0)
    model = _fitted(data, split)  # cross-fitting: a user's only pin in a fold teaches nothing
    assert 0.2 < model.temperature_ < 20 and len(model.classes_) == 12
    result = unknown_users(data, split, model, 0)
    assert "skipped" not in result and result["test_without_rejection"]["known_accuracy"] > 0.5


def test_a_user_with_one_pin_among_few_users_is_fitted():
    data = _generated(n_users=6, per_user=4)
    keep = [i for i, p in enumerate(data.dataset.pins) if p.pin_id not in {"u0-1", "u0-2", "u0-3"}]
    X = data.features.take(np.array(keep))
    y = np.array([data.dataset.pins[i].user for i in keep])  # user0: one pin; six users < 10
    model = FinalModel(C_text=10.0, C_char=10.0, C_image=1.0).fit(X, y)
    ranked = model.rank(X)
    assert ranked.users.shape == (len(y), 6) and np.isfinite(model.temperature_)
    assert (model.predict(X) == y).mean() > 0.9
    # the fold holding user0's only pin knows five users: every fold gives five candidates,
    # and no fold (with its other users' pins) is lost
    _, truth, fold, k = model._out_of_fold(X, y, InProcess())
    assert k == 5 and (fold >= 0).all()
    assert truth[int(np.flatnonzero(y == "user0")[0])] == -1  # its author is in no candidates


@pytest.mark.parametrize("weights", [(0.0, 0.0, 1.0), (1.0, 1.0, 0.0), (1.0, 2.0, 1.0), (1.0,)])
def test_cascade_weights_that_would_leave_a_modality_out_are_refused(weights):
    data = _generated(n_users=3, per_user=4)
    X, y = data.features, [p.user for p in data.dataset.pins]
    with pytest.raises(ValueError, match="cascade weights"):
        FinalModel(cascade_weights=weights).fit(X, y)


def test_cross_fitting_needs_a_user_with_two_pins():
    data = _generated(n_users=12, per_user=1)
    X, y = data.features, [p.user for p in data.dataset.pins]
    with pytest.raises(DataError, match="needs a user with two or more pins"):
        FinalModel().fit(X, y)


@pytest.mark.parametrize("common", [None, 4])
def test_the_variants_candidate_features_from_one_search_equal_each_variants_own_search(
    common, monkeypatch
):
    from dataclasses import replace

    from pinid.models import candidates
    from pinid.models.final_model import _candidates_of, _variants

    if common is not None:  # most terms rare: compared through their postings
        monkeypatch.setattr(candidates, "MAX_COMMON", common)
    data = _generated()
    X, y = data.features, np.array([p.user for p in data.dataset.pins])
    inside, outside = np.arange(len(y)) % 4 != 0, np.flatnonzero(np.arange(len(y)) % 4 == 0)
    X.has_image[outside[::3]] = False  # some held-out pins come without image, some without text
    X.has_text[outside[1::3]] = False
    model = FinalModel(C_text=10.0, C_char=10.0, C_image=1.0)
    views = model._fit_views(X.take(np.flatnonzero(inside)), y[inside])
    classes = np.unique(y)
    features, _ = _candidates_of(views, classes, X, y, outside, 5)
    pins = X.take(outside)
    encoded = views.encode(pins)
    for v, (has_text, has_image) in enumerate(_variants(X)):
        query = replace(pins, has_text=has_text[outside], has_image=has_image[outside])
        own = views.candidates(query, encoded)[2]
        np.testing.assert_allclose(features[v].reshape(own.shape), own, rtol=1e-5, atol=1e-6)
        assert (own[:, -2:] == 0).any()  # the variant leaves a modality out for some pins
