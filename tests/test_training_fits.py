"""Where training's fits run does not change the model: a Fits that runs every fit it is
handed at once (as a Dask cluster does) gives the in-process choice of C and the same folds."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any

import numpy as np
import pytest

from pinid.data import load_dataset
from pinid.features.dataset import prepare
from pinid.features.extract import ImageFeatureExtractor
from pinid.models import final_model
from pinid.models.final_model import FinalModel
from pinid.models.io import _arrays
from pinid.models.selection import CASCADE_GRID, VIEW_MODELS, choose_C, select_C, tune_C


class Eager:
    """Every fit handed over is run at once, before any result is read; records them."""

    def __init__(self) -> None:
        self.handed: list[list] = []

    def share(self, value: Any) -> Any:
        return value

    def map(self, fn: Callable, items: Iterable, *shared: Any) -> Generator:
        items = list(items)
        self.handed.append(items)
        results = [fn(item, *shared) for item in items]
        return (result for result in results)

    def each(self, fn: Callable, items: list) -> list:
        return [fn(item) for item in items]


@pytest.fixture(scope="module")
def pins(sample_corpus):
    data = prepare(load_dataset(sample_corpus), ImageFeatureExtractor(progress=False))
    return data.part({p.pin_id for p in data.dataset.pins})


def test_choose_C_reads_no_further_than_the_in_process_search():
    read = []

    def scores():
        for C, score in [(0.1, 0.2), (1.0, 0.5), (10.0, 0.4), (100.0, 0.9)]:
            read.append(C)
            yield C, score

    assert choose_C(scores()) == (1.0, {0.1: 0.2, 1.0: 0.5, 10.0: 0.4})
    assert read == [0.1, 1.0, 10.0]  # the fall after the rise: 100 is never asked for


@pytest.mark.slow
def test_tune_C_with_every_C_fitted_at_once_chooses_the_in_process_C(pins):
    X, y = pins
    train, val = np.arange(len(y)) % 3 != 0, np.arange(len(y)) % 3 == 0
    parts = (X.take(np.flatnonzero(train)), y[train]), (X.take(np.flatnonzero(val)), y[val])
    eager = Eager()
    elsewhere, here = tune_C(*parts, fits=eager), tune_C(*parts)
    assert (elsewhere.C, elsewhere.scores) == (here.C, here.scores)
    assert [len(items) for items in eager.handed] == [4, 4, 4]  # every view's whole grid


@pytest.mark.slow
def test_tune_C_scores_every_C_as_the_whole_view_model_fitted_with_it(pins):
    """The views' tf-idf and image scaling, fitted once for all Cs, are the ones each C's
    whole model would fit."""
    X, y = pins
    train, val = (
        np.flatnonzero(np.arange(len(y)) % 3 != 0),
        np.flatnonzero(np.arange(len(y)) % 3 == 0),
    )
    scores = tune_C((X.take(train), y[train]), (X.take(val), y[val])).scores
    for view, read in scores.items():
        inputs = X.images if view == "image" else np.array(X.texts, dtype=object)
        whole = select_C(VIEW_MODELS[view](), inputs[train], y[train], inputs[val], y[val])
        assert read == whole[1], view


@pytest.mark.slow
def test_folds_fitted_elsewhere_give_the_in_process_model(pins):
    X, y = pins
    eager = Eager()
    elsewhere = FinalModel(rerank_pins=6).fit(X, y, fits=eager)
    here = FinalModel(rerank_pins=6).fit(X, y)
    for name, array in _arrays(here).items():
        np.testing.assert_array_equal(_arrays(elsewhere)[name], array, err_msg=name)
    assert elsewhere.temperature_ == here.temperature_
    assert [len(items) for items in eager.handed] == [2]  # 5 folds of 4 pins: 6 need two


@pytest.mark.slow
def test_a_fold_that_cannot_be_fitted_is_replaced_by_the_next(pins, monkeypatch):
    X, y = pins
    fitted, original = [], final_model._fold_candidates

    def first_fails(task, *shared):
        fitted.append(task[2].tolist())
        return None if len(fitted) == 1 else original(task, *shared)

    monkeypatch.setattr(final_model, "_fold_candidates", first_fails)
    eager = Eager()
    FinalModel(rerank_pins=6).fit(X, y, fits=eager)
    assert [len(items) for items in eager.handed] == [2, 1]  # folds 0 and 1, then fold 2
    assert len(fitted) == 3


@pytest.mark.slow
def test_the_C_searchs_fits_serve_as_the_fold_when_its_validation_pins_suffice(pins):
    """The search's models at the chosen Cs, fitted on the training pins, and their vectors of
    those pins give the validation pins the candidates a fold fitted on those pins would, and
    no fold is fitted; with too few validation pins the folds are fitted as before."""
    X, y = pins
    seen, unseen = (
        np.flatnonzero(np.arange(len(y)) % 3 != 0),
        np.flatnonzero(np.arange(len(y)) % 3 == 0),
    )
    tuned = tune_C((X.take(seen), y[seen]), (X.take(unseen), y[unseen]))
    spec = FinalModel(rerank_pins=len(unseen), **{f"C_{v}": C for v, C in tuned.C.items()})
    spec.classes_ = np.unique(y)
    # with the views' vectors of the training pins kept from the search, not computed again
    held_out = final_model.HeldOut(tuned.models, seen, unseen, tuned.vectors)
    features, truth, _, k = spec._held_out(X, y, held_out)
    task = (spec, spec.classes_, seen, unseen, k)
    fold_features, fold_truth = final_model._fold_candidates(task, X, y)
    # the search's word vectors are its tf-idf's fit_transform, the fold's a transform: equal
    # within 1e-15, which the search's float32 similarities round either way
    np.testing.assert_allclose(features, fold_features.reshape(-1, features.shape[1]),
                               rtol=0, atol=1e-6)  # fmt: skip
    usable = np.stack([(t | i)[unseen] for t, i in final_model._variants(X)])
    np.testing.assert_array_equal(truth, np.where(usable, fold_truth, -1).ravel())
    assert (truth >= 0).any()

    eager = Eager()
    spec.fit(X, y, fits=eager, held_out=held_out)
    assert eager.handed == []
    assert held_out.models == held_out.vectors == {}  # handed over: not held after the fit
    spec.set_params(rerank_pins=len(unseen) + 1).fit(X, y, fits=eager, held_out=held_out)
    assert len(eager.handed) >= 1  # the folds, fitted


@pytest.mark.slow
def test_fit_identifier_hands_the_C_search_to_the_model_as_its_fold(sample_corpus, monkeypatch):
    """Through pinid.train's path: the search's training and validation pins found among the
    fitted ones, its models used as the fold (no fold fitted), and a C that is not the
    search's refused."""
    from functools import partial

    from pinid.data import make_split
    from pinid.models import training

    data = prepare(load_dataset(sample_corpus), ImageFeatureExtractor(progress=False))
    split = make_split(data.dataset, 0)
    train_ids, val_ids = split.ids("train"), split.ids("val")
    every_pin = {p.pin_id for p in data.dataset.pins}
    tuned = tune_C(data.part(train_ids), data.part(val_ids))
    monkeypatch.setattr(training, "FinalModel", partial(FinalModel, rerank_pins=1))

    def no_folds(*args, **kwargs):
        raise AssertionError("a fold was fitted")

    monkeypatch.setattr(FinalModel, "_out_of_fold", no_folds)
    with pytest.raises(ValueError, match="C search"):
        training.fit_identifier(data, every_pin, {**tuned.C, "text": -1.0},
                                tuned=(tuned, train_ids, val_ids))  # fmt: skip
    assert tuned.cascade in tuned.cascade_scores and len(tuned.cascade_scores) == len(CASCADE_GRID)
    tuned.cascade = (1.0, 0.0, 1.0)  # as if the search had chosen them
    model, _ = training.fit_identifier(data, every_pin, tuned.C, tuned=(tuned, train_ids, val_ids))
    assert tuned.models == {}
    assert model.reranker_ is not None and np.isfinite(model.temperature_)
    assert model.cascade_weights == (1.0, 0.0, 1.0) == model.views_.weights
    with pytest.raises(ValueError, match="apart and among"):
        training.fit_identifier(data, train_ids, tuned.C, tuned=(tune_C(data.part(train_ids),
                                data.part(val_ids)), train_ids, val_ids))  # fmt: skip


@pytest.mark.slow
def test_a_character_view_of_too_many_weights_is_its_users_centroids(sample_corpus, monkeypatch,
                                                                     tmp_path):  # fmt: skip
    """Above the limit the characters' search fits its centroids once (C None) while the
    paper's views keep their grid; pinid.train's path fits the model with them, which is saved
    and loaded answering alike."""
    from functools import partial

    from pinid.data import make_split
    from pinid.models import modality, training
    from pinid.models.centroids import CentroidClassifier
    from pinid.models.io import load_model, save_model
    from pinid.models.modality import describe_C

    extractor = ImageFeatureExtractor(progress=False)
    data = prepare(load_dataset(sample_corpus), extractor)
    split = make_split(data.dataset, 0)
    train_ids, val_ids = split.ids("train"), split.ids("val")
    parts = data.part(train_ids), data.part(val_ids)
    n_grams = len(tune_C(*parts, views=("char",)).models["char"][0].vocabulary_)
    users = len(np.unique(parts[0][1]))
    monkeypatch.setattr(modality, "CENTROIDS_ABOVE", n_grams * users - 1)
    eager = Eager()
    tuned = tune_C(*parts, fits=eager)
    assert tuned.C["char"] is None and list(tuned.scores["char"]) == [None]
    assert None not in (tuned.C["text"], tuned.C["image"])
    assert [len(items) for items in eager.handed] == [4, 1, 4]  # image, char, text
    assert isinstance(tuned.models["char"][-1], CentroidClassifier)
    assert describe_C(tuned.C["char"]) == "centroids"

    monkeypatch.setattr(training, "FinalModel", partial(FinalModel, rerank_pins=1))
    every_pin = {p.pin_id for p in data.dataset.pins}
    model, pins = training.fit_identifier(data, every_pin, tuned.C,
                                          tuned=(tuned, train_ids, val_ids))  # fmt: skip
    assert model.C_char is None
    assert isinstance(model.views_.char.named_steps["logistic"], CentroidClassifier)
    save_model(tmp_path / "model", model, pins, training.extractor_record(extractor))
    loaded = load_model(tmp_path / "model").model
    assert loaded.C_char is None
    X = data.features
    np.testing.assert_array_equal(loaded.views_.probabilities(X)["char"],
                                  model.views_.probabilities(X)["char"])  # fmt: skip
    np.testing.assert_array_equal(loaded.rank(X).users, model.rank(X).users)


@pytest.mark.slow
def test_with_many_users_the_default_models_image_view_is_fitted_over_shortlists(
    sample_corpus, monkeypatch, tmp_path
):
    """Above the limit the default model's image search and final fit run over shortlists,
    the paper's search keeps the full regression; the model is saved and loaded answering
    alike."""
    from functools import partial

    from pinid.data import make_split
    from pinid.models import shortlist, training
    from pinid.models.io import load_model, save_model
    from pinid.models.logistic import PreconditionedLogisticRegression
    from pinid.models.shortlist import ShortlistLogisticRegression

    extractor = ImageFeatureExtractor(progress=False)
    data = prepare(load_dataset(sample_corpus), extractor)
    split = make_split(data.dataset, 0)
    train_ids, val_ids = split.ids("train"), split.ids("val")
    parts = data.part(train_ids), data.part(val_ids)
    monkeypatch.setattr(shortlist, "SHORTLIST_ABOVE", 0)
    monkeypatch.setattr(shortlist, "SHORTLIST", 3)
    paper = tune_C(*parts, views=("image",), shortlisted=False).models["image"][-1]
    assert type(paper) is PreconditionedLogisticRegression
    tuned = tune_C(*parts)
    searched = tuned.models["image"][-1]
    assert isinstance(searched, ShortlistLogisticRegression)
    full = PreconditionedLogisticRegression(C=tuned.C["image"], tol=searched.tol)
    full.fit(tuned.vectors["image"], parts[0][1])
    assert not np.allclose(searched.coef_, full.coef_)  # the same C over shortlists of 3

    monkeypatch.setattr(training, "FinalModel", partial(FinalModel, rerank_pins=1))
    every_pin = {p.pin_id for p in data.dataset.pins}
    model, pins = training.fit_identifier(data, every_pin, tuned.C,
                                          tuned=(tuned, train_ids, val_ids))  # fmt: skip
    image = model.views_.base.image_model_.named_steps["logistic"]
    assert isinstance(image, ShortlistLogisticRegression)
    save_model(tmp_path / "model", model, pins, training.extractor_record(extractor))
    loaded = load_model(tmp_path / "model").model
    X = data.features
    np.testing.assert_array_equal(loaded.views_.probabilities(X)["image"],
                                  model.views_.probabilities(X)["image"])  # fmt: skip
    np.testing.assert_array_equal(loaded.rank(X).users, model.rank(X).users)
