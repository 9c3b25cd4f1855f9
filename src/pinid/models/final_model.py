"""Beyond the paper: the cascade of three views, a learned re-ranker of its top 10, and
calibrated probabilities (``cf_rerank``).

The paper's model (:class:`PaperModel`: words + image, cascade, refinement) is kept whole
inside as ``views_.base``; a character n-gram text view joins the cascade; the re-ranker learns
from out-of-fold candidates of the training pins (cross-fitting: every pin is scored by views fitted
without it, as a test pin would be), so it never sees in-sample, over-confident view scores;
the temperature is fitted on out-of-fold scores of the re-ranker itself (cross-fitted over the
same folds), so no pin's score that fits it comes from a re-ranker that learnt from that pin.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from pinid.errors import DataError
from pinid.features.pin_features import PinFeatures
from pinid.models.candidates import (
    SEARCH_SPACES,
    SIMILARITY_STATS,
    CandidateSearch,
    Found,
    candidate_features,
)
from pinid.models.fits import Fits, InProcess
from pinid.models.fusion import cascade, check_cascade_weights, given_or_ones
from pinid.models.modality import (
    fit_models,
    make_char_model,
    make_image_model,
    make_text_model,
)
from pinid.models.paper_model import PaperModel
from pinid.models.ranking import top_k
from pinid.models.refinement import TOP_K
from pinid.models.reranker import Reranker, calibrated, fit_temperature
from pinid.models.threads import blas_threads, side_by_side

N_FOLDS = 5
RERANK_PINS = 10_000
VIEWS = ("text", "char", "image")


def n_candidate_features(char_similarity: bool) -> int:
    """Fused score and position; probability and rank per view; similarity statistics per
    space searched (the character space's with ``char_similarity``); pin count, has text,
    has image (see :func:`candidate_features`)."""
    spaces = len(SEARCH_SPACES) - (not char_similarity)
    return 2 + 2 * len(VIEWS) + len(SIMILARITY_STATS) * spaces + 3


@dataclass
class Encoded:
    """A batch's vectors in every view, computed once for the probabilities, the similarity
    search and the evidence: word and character tf-idf of its texts, L2-normalised image
    features (rows as given, whether or not a modality is used)."""

    words: sp.csr_matrix
    chars: sp.csr_matrix
    images: np.ndarray

    def knows_text(self) -> np.ndarray:
        """Per pin: has its text a word or a character n-gram the model knows?"""
        return (np.diff(self.words.indptr) > 0) | (np.diff(self.chars.indptr) > 0)

    def take(self, rows: np.ndarray) -> Encoded:
        return Encoded(self.words[rows], self.chars[rows], self.images[rows])


@dataclass
class Ranking:
    """Per pin, ``k`` candidate users best first, with what an answer shows of each."""

    users: np.ndarray  # (n, k) class indices
    probability: np.ndarray  # (n, k) calibrated P(author), summing to one over the candidates
    logits: np.ndarray  # (n, k) re-ranker decision values
    view_probability: dict[str, np.ndarray]  # view -> (n, k) that view's probability
    evidence: np.ndarray  # (n, k) the candidate's training pin most similar to the pin
    similarity: np.ndarray  # (n, k) its cosine similarity (the paper's refinement space)


@dataclass
class HeldOut:
    """The three views' models already fitted on some of the training pins (rows
    ``fitted_on``), and pins they never saw (rows ``unseen``): the C search's fits at the
    chosen Cs, with the validation pins. When those pins alone are enough to teach the
    re-ranker (``rerank_pins``) they are the cross-fitting fold, and no fold is fitted."""

    models: dict[str, Pipeline]
    fitted_on: np.ndarray
    unseen: np.ndarray
    vectors: dict[str, Any] = field(default_factory=dict)
    """Each view's vectors of the pins ``fitted_on`` (its model's steps' output), if kept."""


class Views:
    """Word, character and image views fitted on some pins: probabilities and candidates."""

    def __init__(
        self, base: PaperModel, char: Pipeline, train_texts: Sequence[str], top: int,
        train_chars: sp.csr_matrix | None = None,
        weights: Sequence[float] = (1.0, 1.0, 1.0), char_similarity: bool = False,
    ) -> None:  # fmt: skip
        """``train_chars``: the character vectors of ``train_texts``, if already computed;
        ``weights``: each view's in the cascade that shortlists candidates (in ``VIEWS``' order);
        ``char_similarity``: whether the candidate search compares in the character space too.
        """
        self.base, self.char, self.top, self.weights = base, char, top, tuple(weights)
        n_classes = len(base.classes_)
        self.log_counts = np.log(np.bincount(base.train_y_, minlength=n_classes))
        if char_similarity and train_chars is None:
            train_chars = self.char_vectors(train_texts)
        chars = sp.csr_matrix(train_chars) if char_similarity else None
        self.search = CandidateSearch(base.train_text_, chars, base.train_image_, base.train_y_,
                                      n_classes, base.similarity)  # fmt: skip

    def char_vectors(self, texts: Sequence[str]) -> sp.csr_matrix:
        return sp.csr_matrix(self.char.named_steps["tfidf"].transform(list(texts)))

    def encode(self, X: PinFeatures) -> Encoded:
        return Encoded(
            self.base.text_vectors(X.texts),
            self.char_vectors(X.texts),
            self.base.image_vectors(X.images),
        )

    def probabilities(
        self, X: PinFeatures, encoded: Encoded | None = None
    ) -> dict[str, np.ndarray]:
        """r_text, r_char and r_image; a modality not given contributes ones. The character
        view's sparse product (one thread) runs beside the others where BLAS has threads to
        spare."""
        encoded = encoded or self.encode(X)
        char_model = self.char.named_steps["logistic"]

        def char() -> np.ndarray:
            return given_or_ones(lambda: char_model.predict_proba(encoded.chars[X.has_text]),
                                 X.has_text, len(self.base.classes_))  # fmt: skip

        def paper() -> tuple[np.ndarray, np.ndarray]:
            return self.base.modality_proba(X, encoded.words, encoded.images)

        r_char, (r_text, r_image) = side_by_side(lambda view: view(), [char, paper],
                                                 blas_threads())  # fmt: skip
        return {"text": r_text, "char": r_char, "image": r_image}

    def shortlist(
        self, X: PinFeatures, encoded: Encoded
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """(every view's probabilities, their weighted cascade, its top k users (n, k)) of the
        pins of ``X``, whose vectors are ``encoded``."""
        views = self.probabilities(X, encoded)
        fused = cascade(*views.values(), weights=self.weights)
        return views, fused, top_k(fused, min(self.top, fused.shape[1]))

    def queries(self, X: PinFeatures, encoded: Encoded) -> tuple:
        """The candidate search's queries: each pin's vectors where its modality is used."""
        given = sp.diags(X.has_text.astype(np.float32))  # a pin without text has no text vector
        chars = given @ encoded.chars if "char" in self.search.spaces else None
        return given @ encoded.words, chars, encoded.images * X.has_image[:, None]

    def candidates(
        self, X: PinFeatures, encoded: Encoded, evidence: bool = False
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, Found]:
        """(every view's probabilities, candidates (n, k), their features (n * k, d), what the
        search found: with ``evidence``, each candidate's pin most similar) of the pins of
        ``X``, whose vectors are ``encoded``."""
        views, fused, candidates = self.shortlist(X, encoded)
        found = self.search.search(*self.queries(X, encoded), candidates, evidence)
        return views, candidates, self.features(X, views, fused, candidates, found.stats), found

    def features(self, X: PinFeatures, views: dict[str, np.ndarray], fused: np.ndarray,
                 candidates: np.ndarray, stats: np.ndarray) -> np.ndarray:  # fmt: skip
        """The candidates' features (n * k, d) from their similarity statistics ``stats``."""
        return candidate_features(fused, candidates, views, stats, self.log_counts, X.has_text,
                                  X.has_image)  # fmt: skip


class FinalModel(ClassifierMixin, BaseEstimator):
    """cf_rerank, pinid's default model: word, character and image views, cascade, learned
    re-ranking of the top k, calibrated probabilities.

    Parameters
    ----------
    C_text, C_char, C_image : float
        Inverse regularisation of each view's logistic regression; ``C_char`` None: the
        character view is a softmax over the users' centroids
        (:class:`pinid.models.centroids.CentroidClassifier`).
    cascade_weights : tuple of 3 floats
        Each view's weight (text, char, image) in the cascade that shortlists the candidates,
        in [0, 1]: its probabilities raised to it (0: left out; the image's and one text
        view's above 0). The C search chooses them
        (:func:`pinid.models.selection.choose_cascade`).
    rerank_alpha : float
        L2 penalty of the re-ranker.
    similarity : {"joint", "text", "image"}
        The space of the evidence (the paper's refinement).
    top_k : int
        Candidates per pin.
    n_folds : int
        Folds of the cross-fitting that gives the re-ranker out-of-fold candidates.
    rerank_pins : int or None
        Out-of-fold pins that suffice to teach the re-ranker: no more folds are fitted once
        they are reached (None: every fold).
    random_state : int
        Seed of those folds.
    char_similarity : bool
        Whether the re-ranker is also given each candidate's similarity statistics in the
        character n-gram space (the pin's best, best three and mean cosine to the candidate's
        training pins), as models saved with re-ranker part version 1 or 2 have it. Off by
        default: that comparison was two thirds of the candidate search's work, and the
        re-ranker ranked as well without it (docs/performance.md).

    Attributes
    ----------
    classes_ : ndarray of str
        The users.
    views_ : Views
        The three views fitted on all pins, the paper's model among them (``views_.base``).
    reranker_ : Reranker
        The re-ranker, fitted on out-of-fold candidates.
    temperature_ : float
        The temperature of the calibrated probabilities.
    """

    def __init__(
        self,
        C_text: float = 1.0,
        C_char: float | None = 1.0,
        C_image: float = 1.0,
        cascade_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        rerank_alpha: float = 1e-3,
        similarity: str = "joint",
        top_k: int = TOP_K,
        n_folds: int = N_FOLDS,
        rerank_pins: int | None = RERANK_PINS,
        random_state: int = 0,
        char_similarity: bool = False,
    ) -> None:
        self.C_text = C_text
        self.C_char = C_char
        self.C_image = C_image
        self.cascade_weights = cascade_weights
        self.rerank_alpha = rerank_alpha
        self.similarity = similarity
        self.top_k = top_k
        self.n_folds = n_folds
        self.rerank_pins = rerank_pins
        self.random_state = random_state
        self.char_similarity = char_similarity

    def _fit_views(self, X: PinFeatures, y: np.ndarray) -> Views:
        texts = list(X.texts)
        image = make_image_model(self.C_image, shortlisted=True)
        models = fit_models({"image": (image, X.images),
                             "char": (make_char_model(self.C_char), texts),
                             "text": (make_text_model(self.C_text), texts)}, y)  # fmt: skip
        return self._views_of(models, X, y)

    def _views_of(self, models: dict[str, Pipeline], X: PinFeatures, y: np.ndarray,
                  vectors: dict[str, Any] | None = None) -> Views:  # fmt: skip
        """The views whose models were fitted on ``X``, ``y``; ``vectors``, their steps' output
        for ``X`` where already computed."""
        vectors = vectors or {}
        base = PaperModel(C_text=self.C_text, C_image=self.C_image, similarity=self.similarity,
                          top_k=self.top_k)  # fmt: skip
        base.with_models(models["text"], models["image"], X, y, vectors.get("text"),
                         vectors.get("image"))  # fmt: skip
        return Views(base, models["char"], X.texts, self.top_k, vectors.get("char"),
                     self.cascade_weights, self.char_similarity)  # fmt: skip

    def fit(
        self,
        X: PinFeatures,
        y: Sequence[str],
        *,
        fits: Fits | None = None,
        held_out: HeldOut | None = None,
    ) -> FinalModel:
        """Fit on ``X``; ``fits`` says where the cross-fitting folds are fitted (default: this
        process, one after another; it does not change the model); ``held_out``, views already
        fitted on some of ``X`` that serve as the fold when their unseen pins suffice (see
        :class:`HeldOut`): the re-ranker then learns from those pins. ``held_out``'s models
        are let go (its dict emptied) once the fold is scored, so that they are not held beside
        the final views."""
        y = np.asarray(y)
        check_cascade_weights(self.cascade_weights)
        self.classes_ = np.unique(y)  # as the views' (PaperModel.classes_)
        # the folds' views before the final ones, so that the two are never held together
        if held_out is not None and len(held_out.unseen) >= (self.rerank_pins or len(y) + 1):
            features, truth, fold, k = self._held_out(X, y, held_out)
        else:
            if held_out is not None:  # its vectors serve only as the fold
                held_out.vectors.clear()
            features, truth, fold, k = self._out_of_fold(X, y, fits or InProcess())
        if held_out is not None:
            held_out.models.clear()
            held_out.vectors.clear()
        self.views_ = self._fit_views(X, y)
        self.reranker_ = Reranker(self.rerank_alpha).fit(features, truth)
        self.temperature_ = self._fit_temperature(features, truth, fold, k)
        return self

    def _fit_temperature(self, features, truth, fold, k) -> float:
        """T fitted on out-of-fold re-ranker scores of the training pins as given (the first
        variant): each fold's pins scored by a re-ranker fitted on the other folds' candidates,
        as a test pin is scored by one that never saw it."""
        n = len(fold)
        pin_fold = np.tile(fold, len(truth) // n)  # every variant of a pin in the pin's fold
        rows = np.repeat(pin_fold, k)
        logits, scored = np.zeros((n, k)), np.zeros(n, bool)
        for f in np.unique(fold[fold >= 0]):
            if not (truth[pin_fold != f] >= 0).any():  # the other folds teach nothing
                continue
            reranker = Reranker(self.rerank_alpha).fit(features[rows != f], truth[pin_fold != f])
            logits[fold == f] = reranker.decision_function(features[: n * k][rows[: n * k] == f]
                                                           ).reshape(-1, k)  # fmt: skip
            scored |= fold == f
        return fit_temperature(logits[scored], truth[:n][scored])

    def _out_of_fold(self, X: PinFeatures, y: np.ndarray, fits: Fits):
        """Candidate features of every pin from views fitted on the other folds, three times:
        as given, with its text only and with its image only, so that the re-ranker also
        learns to rank a pin that arrives with one modality (as queries may).

        A user with fewer pins than folds is in fewer folds; the fold that holds out a user's
        only pin knows no such user, so that pin's candidates lack its author and teach the
        re-ranker nothing (truth -1) -- as for a test pin whose author is not among its top k.
        Where a fold knows fewer than ``top_k`` users (a corpus of few users), every fold
        gives that many candidates. A fold that cannot be fitted (its pins share no word, or it
        knows a single user) is left out, its pins teaching nothing.

        Folds are fitted until their pins number ``rerank_pins``: a large corpus teaches the
        re-ranker (a few dozen weights) as well from one fold as from five, at a fifth of the
        cost; a single fold's pins are then cut at random for the temperature's cross-fitting.
        Folds are handed to ``fits`` in rounds of those that would be fitted if every one of
        them could be, so a cluster fits the folds an in-process run fits, and no others.

        Returns features ((3 m k, d), variant-major, then the m pins of the fitted folds in
        their order in ``X``), each row's author position among its candidates (-1: not among
        them), each of those pins' fold and k.
        """
        n = len(y)
        largest = int(np.bincount(np.unique(y, return_inverse=True)[1]).max())
        if largest < 2:
            raise DataError("cross-fitting the re-ranker needs a user with two or more pins")
        folds = StratifiedKFold(min(largest, self.n_folds), shuffle=True,
                                random_state=self.random_state)  # fmt: skip
        with warnings.catch_warnings():  # "the least populated class has fewer members than
            warnings.simplefilter("ignore", UserWarning)  # n_splits": meant, see above
            splits = list(folds.split(np.zeros(n), y))
        # in a corpus of few users a fold may know fewer than top_k of them: fewer candidates
        known = [len(np.unique(y[inside])) for inside, _ in splits]
        k = min([self.top_k, len(self.classes_)] + [u for u in known if u >= 2])
        spec = clone(self)  # the parameters: what fitting a fold's views needs of the model
        shared = [fits.share(value) for value in (X, y)]
        folds_found = []  # (fold, its pins, their features, their authors' positions)
        target, held, start = self.rerank_pins or n, 0, 0
        while start < len(splits) and held < target:  # enough pins teach the re-ranker: stop
            # the next folds, up to the first that reaches the target should every one fit
            reach = held + np.cumsum([len(outside) for _, outside in splits[start:]])
            batch = range(start, min(start + int(np.searchsorted(reach, target)) + 1, len(splits)))
            tasks = [(spec, self.classes_, *splits[f], k) for f in batch]
            # in process, one fold's views at a time: let go before the next fold's are fitted
            for f, found in zip(batch, fits.map(_fold_candidates, tasks, *shared), strict=True):
                if found is not None:
                    folds_found.append((f, splits[f][1], *found))
                    held += len(splits[f][1])
            start = batch.stop
        if not folds_found:
            raise DataError(
                "cross-fitting the re-ranker: no fold of the training pins could "
                "be fitted (too few pins sharing a word, or too few users)"
            )
        return (*self._gathered(X, folds_found), k)

    def _held_out(self, X: PinFeatures, y: np.ndarray, held_out: HeldOut):
        """What :meth:`_out_of_fold` returns, from the one fold ``held_out`` (no fit)."""
        seen = held_out.fitted_on
        # with the views' image vectors of these pins kept, not a copy of their features (240
        # MB at the paper's scale)
        pins = X.take(seen, images="image" not in held_out.vectors)
        views = self._views_of(held_out.models, pins, y[seen], held_out.vectors)
        k = min(self.top_k, len(views.base.classes_))
        found = _candidates_of(views, self.classes_, X, y, held_out.unseen, k)
        return (*self._gathered(X, [(0, held_out.unseen, *found)]), k)

    def _gathered(self, X: PinFeatures, folds_found: list) -> tuple:
        """The folds' ``(fold, its pins, their features, their authors' positions)`` as
        :meth:`_out_of_fold` returns them (without k)."""
        held = np.concatenate([pins for _, pins, _, _ in folds_found])
        order = np.argsort(held)  # the pins in their order in X
        fold = np.concatenate([np.full(len(pins), f) for f, pins, _, _ in folds_found])[order]
        if len(folds_found) == 1:  # the temperature is cross-fitted within the one fold
            fold = np.random.default_rng(self.random_state).permutation(len(fold)) % self.n_folds
        features = np.concatenate([v for _, _, v, _ in folds_found], axis=1)[:, order]
        truth = np.concatenate([t for _, _, _, t in folds_found], axis=1)[:, order]
        usable = np.stack([(t | i)[held[order]] for t, i in _variants(X)])  # a variant with
        truth = np.where(usable, truth, -1).ravel()  # no modality (text-only of a textless pin)
        n_features = n_candidate_features(self.char_similarity)
        return features.reshape(-1, n_features), truth, fold  # is skipped

    def rank(self, X: PinFeatures, encoded: Encoded | None = None) -> Ranking:
        """Each pin's candidates re-ranked, with calibrated probabilities, each view's
        probability and the evidence; ``encoded`` (``views_.encode(X)``) if already computed."""
        encoded = encoded or self.views_.encode(X)
        views, candidates, features, found = self.views_.candidates(X, encoded, evidence=True)
        logits = self.reranker_.decision_function(features).reshape(candidates.shape)
        order = np.argsort(-logits, axis=1, kind="stable")
        users = np.take_along_axis(candidates, order, axis=1)
        logits = np.take_along_axis(logits, order, axis=1)
        return Ranking(
            users=users,
            probability=calibrated(logits, self.temperature_),
            logits=logits,
            view_probability={v: np.take_along_axis(p, users, axis=1) for v, p in views.items()},
            evidence=np.take_along_axis(found.evidence, order, axis=1),
            similarity=np.take_along_axis(found.similarity, order, axis=1),
        )

    def predict(self, X: PinFeatures) -> np.ndarray:
        return self.classes_[self.rank(X).users[:, 0]]


def _variants(X: PinFeatures) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each pin's modalities used: as given, its text only, its image only."""
    n = len(X)
    return [(X.has_text, X.has_image), (X.has_text, np.zeros(n, bool)),
            (np.zeros(n, bool), X.has_image)]  # fmt: skip


def _fold_candidates(task, X: PinFeatures, y: np.ndarray):
    """Candidate features ((variants, pins, k, d)) and author positions ((variants, pins))
    of the pins ``outside``, from views fitted on the pins ``inside`` (``task``: the model's
    parameters, its classes, inside, outside, k); None when those views cannot be fitted."""
    spec, classes, inside, outside, k = task
    if len(np.unique(y[inside])) < 2:
        return None
    try:
        views = spec._fit_views(X.take(inside), y[inside])
    except DataError:
        return None
    return _candidates_of(views, classes, X, y, outside, k)


def _candidates_of(views: Views, classes: np.ndarray, X: PinFeatures, y: np.ndarray,
                   outside: np.ndarray, k: int):  # fmt: skip
    """What :func:`_fold_candidates` returns, from views already fitted without ``outside``."""
    views.top = k  # as many candidates as every fold can give
    fold_classes = np.searchsorted(classes, views.base.classes_)
    author = np.searchsorted(classes, y[outside])
    pins = X.take(outside)
    encoded = views.encode(pins)  # the variants differ only in the modalities used
    queries = [replace(pins, has_text=t[outside], has_image=i[outside]) for t, i in _variants(X)]
    shortlists = [views.shortlist(query, encoded) for query in queries]
    # one search for every variant's candidates (as given: its modalities include the others'):
    # a pair's statistics in a space are the same in every variant that uses the space's
    # modality, and zero in the others
    n, n_users = len(outside), len(views.base.classes_)
    keys = [np.arange(n)[:, None] * n_users + candidates for _, _, candidates in shortlists]
    pairs = np.unique(np.concatenate(keys, axis=None))
    found = views.search.search_pairs(*views.queries(queries[0], encoded), pairs // n_users,
                                      pairs % n_users)  # fmt: skip
    features = np.zeros((len(queries), n, k, n_candidate_features("char" in views.search.spaces)))
    truth = np.full((len(queries), n), -1)
    for v, (query, (probabilities, fused, candidates), key) in enumerate(
        zip(queries, shortlists, keys, strict=True)
    ):
        stats = found.stats[np.searchsorted(pairs, key)]  # (n, k, spaces, statistics)
        for at, space in enumerate(views.search.spaces):  # zero where the modality is unused
            used = query.has_image if space == "image" else query.has_text
            stats[:, :, at] *= used[:, None, None]
        hit = fold_classes[candidates] == author[:, None]  # fold -> full class index
        truth[v] = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        features[v] = views.features(query, probabilities, fused, candidates, stats).reshape(
            n, k, -1
        )
    return features, truth
