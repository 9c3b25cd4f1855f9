"""pinid's Python API: train a model, save and load it, identify pins.

:class:`Model` is the one owner of answers: ``pinid predict``, ``pinid train``, the web service
and notebooks all go through it, so the same pin gets the same :class:`Answer` everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin

from pinid._atomic import output_lock
from pinid.data import Dataset, load_dataset, make_split
from pinid.data.manifest import cell_text, dataset_from_records, missing
from pinid.data.split import split_for
from pinid.errors import DataError, ModelFileError, PinidError
from pinid.features import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_ENGINE,
    DEFAULT_EXTRACTOR,
    MAX_FAILURE_RATE,
)
from pinid.features.pin_features import PinFeatures
from pinid.models.answer import AccountPair, Answer, Answers, collection_paused
from pinid.models.final_model import FinalModel
from pinid.models.io import (
    TrainingPins,
    load_model,
    read_document,
    rejection_threshold,
    save_model,
)

if TYPE_CHECKING:
    from pinid.features.extract import ImageFeatureExtractor
    from pinid.models.fits import Fits
    from pinid.models.linking import AccountLinker

TOP = 10
LINKS_TOP = 20
LINKS_MAX = 1000
ANSWER_SCORES = 8_000_000
"""Pins x users a batch is answered in at once (each view's probabilities, float64: 64 MB):
the views, the cascade and the ranks are pins x users arrays, so a large batch of a model of
many users would hold GBs (100,000 pins at 2,000 users: 1.6 GB an array). The answers are the
same but for float32 rounding of the probabilities (2.6e-5 relative at most, measured on the
sample corpus)."""


class Model:
    """A trained model with what its answers need: the training pins shown as evidence, the
    image extractor it was trained with and the rejection threshold.

    Parameters
    ----------
    final : FinalModel
        The fitted identifier (cf_rerank).
    pins : TrainingPins
        Its training pins, row-aligned with its arrays.
    extractor : dict
        The image extractor's record (name, fit, id).
    meta : dict, optional
        What the model folder records beside (seed, the threshold chosen in training).
    reject_below : float, "auto" or None
        Answer "unknown" when the top probability is below it; "auto" (the default) takes the
        threshold chosen on held-out users in training; None never answers "unknown".
    folder : Path or None
        The model folder it was loaded from or saved to; answers name the model by it.
    identity : str or None
        The sha256 of its arrays in that folder: which model this is.
    """

    def __init__(
        self,
        final: FinalModel,
        pins: TrainingPins,
        extractor: dict,
        *,
        meta: dict | None = None,
        reject_below: float | str | None = "auto",
        folder: str | Path | None = None,
        identity: str | None = None,
        progress: bool = False,
    ) -> None:
        self.final, self.pins, self.extractor_record = final, pins, extractor
        self.meta = dict(meta or {})
        self.folder = None if folder is None else Path(folder)
        self.identity = identity
        self.reject_below = rejection_threshold(self.meta, self.name, reject_below)
        self._reject_rule = reject_below  # as asked: "auto" follows a reloaded model
        self._progress = progress
        self._extractor: ImageFeatureExtractor | None = None
        self._linker: AccountLinker | None = None

    # --- files ----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        reject_below: float | str | None = "auto",
        progress: bool = False,
    ) -> Model:
        """A model folder written by ``pinid train``, ``pinid experiment`` or :meth:`save`."""
        saved = load_model(folder)
        return cls(saved.model, saved.pins, saved.extractor, meta=saved.meta,
                   reject_below=reject_below, folder=folder, identity=saved.identity,
                   progress=progress)  # fmt: skip

    def reload(self) -> Model:
        """The model now in this model's folder (retrained since, say), with the same
        rejection rule; it shares this model's loaded CNN when its extractor is the same."""
        if self.folder is None:
            raise PinidError("a model that was never saved has no folder to reload from")
        new = Model.load(self.folder, reject_below=self._reject_rule, progress=self._progress)
        if new.extractor_record == self.extractor_record:
            new._extractor = self._extractor
        return new

    def save(self, folder: str | Path) -> Path:
        """Write the model folder (atomically: a reader sees the old folder or the new one)."""
        with output_lock(folder):
            path = save_model(folder, self.final, self.pins, self.extractor_record, **self.meta)
            self.folder, self.identity = Path(folder), read_document(path)[0]["arrays"]["sha256"]
        return path

    # --- what it knows --------------------------------------------------------------------
    @property
    def name(self) -> str:
        """How answers name the model: its folder as given, once it has one."""
        return "(not saved)" if self.folder is None else str(self.folder)

    @property
    def users(self) -> list[str]:
        return [str(u) for u in self.final.classes_]

    @property
    def n_image_features(self) -> int:
        """The width of the image features the model was trained on."""
        return int(self.final.views_.base.train_image_.shape[1])

    @property
    def extractor(self) -> ImageFeatureExtractor:
        """The CNN the model was trained with (loaded on first use)."""
        if self._extractor is None:
            from pinid.features.extract import ImageFeatureExtractor

            record = self.extractor_record
            # a model of pinid 0.2 has no style statistics, one before 0.5 no engine (torch's)
            extractor = ImageFeatureExtractor(
                record["name"], fit=record["fit"], progress=self._progress,
                style=record.get("style", False), engine=record.get("engine", "torch"),
            )  # fmt: skip
            if extractor.extractor_id != record["id"]:
                raise ModelFileError(
                    f"{self.name}: trained with image extractor {record['id']}, "
                    f"but this installation has {extractor.extractor_id}"
                )
            if extractor.feature_dim != self.n_image_features:
                raise ModelFileError(
                    f"{self.name}: its image view takes {self.n_image_features} features, "
                    f"its extractor gives {extractor.feature_dim}"
                )
            self._extractor = extractor
        return self._extractor

    # --- answers --------------------------------------------------------------------------
    def identify(
        self, text: str | None = None, image: str | Path | None = None, *, top: int = TOP
    ) -> Answer:
        """Who posted this pin? Either modality may be left out (None)."""
        if text is None and image is None:
            raise DataError("give a text, an image or both")
        if image is not None and not Path(image).is_file():
            where = "is a folder, not an image" if Path(image).is_dir() else "image file not found"
            raise DataError(f"{image}: {where}")
        answer = self.identify_many([text], [image], top=top)[0]
        if answer.image_error is not None:
            raise DataError(f"{image}: {answer.image_error}")
        if not answer.candidates:
            raise DataError(
                "nothing to identify: the text has nothing the model knows, and no image"
            )
        return answer

    def identify_many(
        self,
        texts: Sequence[str | None],
        images: Sequence[str | Path | None],
        *,
        top: int = TOP,
    ) -> Answers:
        """One answer per pin (:class:`Answers`, a sequence of :class:`Answer`); an unreadable
        image is left out and ``image_error`` says why, and a pin of which nothing is usable
        gets ``user`` None and no candidates."""
        _check_top(top)
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} texts but {len(images)} images")
        vectors = np.zeros((len(images), self.n_image_features), np.float32)
        has_image = np.zeros(len(images), bool)
        errors: dict[int, str] = {}
        rows = [i for i, path in enumerate(images) if path is not None]
        if rows:
            result = self.extractor.extract([Path(images[i]) for i in rows], what="query")
            for j, row in enumerate(rows):
                if result.readable[j]:
                    vectors[row], has_image[row] = result.features[j], True
                else:
                    errors[row] = f"unreadable: {result.unreadable[j]}"
        answers = self.identify_features(texts, vectors, has_image, top=top)
        answers.image_errors.update(errors)
        return answers

    def identify_features(
        self,
        texts: Sequence[str | None],
        image_vectors: np.ndarray,
        has_image: np.ndarray,
        *,
        top: int = TOP,
    ) -> Answers:
        """Answers for pins whose image features are already computed (rows where
        ``has_image`` is false have no image). A text with neither a word nor a character
        n-gram the model knows is not used: it would only restate the users' prior."""
        _check_top(top)
        given = np.array([bool(t and t.strip()) for t in texts], dtype=bool)  # "" = no text
        X = PinFeatures([t or "" for t in texts], np.asarray(image_vectors, np.float32),
                        given.copy(), np.array(has_image, dtype=bool))  # fmt: skip
        step = max(1, ANSWER_SCORES // len(self.final.classes_))
        usable, parts = np.zeros(len(X), bool), []
        for start in range(0, len(X), step):
            rows = slice(start, start + step)
            usable[rows], ranked = self._rank_chunk(X, rows, top)
            parts += [] if ranked is None else [ranked]
        ranked = {name: np.concatenate([part[name] for part in parts]) if parts
                  else np.zeros((0, 0), int) for name in Answers.ARRAYS}  # fmt: skip
        return Answers(self.final.classes_, self.pins, ranked,
                       np.where(usable, np.cumsum(usable) - 1, -1), X.has_text, X.has_image,
                       given & ~X.has_text, self.reject_below, self.name)  # fmt: skip

    def _rank_chunk(self, X: PinFeatures, rows: slice, top: int) -> tuple[np.ndarray, dict | None]:
        """Of the pins ``rows`` of ``X``: which have a usable text or image, and those pins'
        first ``top`` candidates as :class:`Answers` holds them (None: no pin usable). Sets
        ``X.has_text`` of those rows to whether the model knows their text."""
        chunk = PinFeatures(X.texts[rows], X.images[rows], X.has_text[rows], X.has_image[rows])
        # scikit-learn's checks of its functions' arguments, skipped: pinid's own calls pass
        # valid ones, and checking them cost a single pin's answer about a millisecond
        with collection_paused(), config_context(skip_parameter_validation=True):
            encoded = self.final.views_.encode(chunk)
            X.has_text[rows] = chunk.has_text = chunk.has_text & encoded.knows_text()
            usable = chunk.has_text | chunk.has_image
            if not usable.any():
                return usable, None
            if not usable.all():  # (every pin usable: ranked without a copy of their vectors)
                rows_used = usable.nonzero()[0]
                chunk, encoded = chunk.take(rows_used), encoded.take(rows_used)
            ranking = self.final.rank(chunk, encoded)
        k = min(top, ranking.users.shape[1])
        return usable, {
            "users": ranking.users[:, :k],
            "probability": ranking.probability[:, :k],
            "text_prob": ranking.view_probability["text"][:, :k],
            "image_prob": ranking.view_probability["image"][:, :k],
            "evidence": ranking.evidence[:, :k],
            "similarity": np.minimum(ranking.similarity[:, :k], 1.0),  # float32 rounding
        }

    # --- accounts ------------------------------------------------------------------------
    def links(self, top: int = LINKS_TOP) -> list[AccountPair]:
        """The pairs of this model's users most likely to be one person, best first, each with
        its most alike pin pairs (:mod:`pinid.models.linking`; fitted on first use)."""
        _check_top(top, LINKS_MAX)
        from pinid.models.linking import account_pairs, model_linker

        if self._linker is None:
            self._linker = model_linker(self.final, self.pins)
        return account_pairs(self._linker, self.pins, top)


def _check_top(top: int, most: int = TOP) -> None:
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= most:
        raise ValueError(f"top must be a whole number from 1 to {most}, not {top!r}")


def load(
    folder: str | Path, *, reject_below: float | str | None = "auto", progress: bool = False
) -> Model:
    """Load a model folder (see :meth:`Model.load`)."""
    return Model.load(folder, reject_below=reject_below, progress=progress)


def train(
    data: str | Path | Dataset | Any,
    *,
    root: str | Path = ".",
    seed: int = 0,
    split: str | Path | None = None,
    extractor: str = DEFAULT_EXTRACTOR,
    style: bool = True,
    engine: str = DEFAULT_ENGINE,
    similarity: str = "joint",
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_unreadable: float = MAX_FAILURE_RATE,
    strict: bool = False,
    fits: Fits | None = None,
) -> Model:
    """Train the final model as ``pinid train`` does: each view's C chosen on the validation
    part of a seeded 4:1:1 split (or ``split``, a file from ``pinid data split``), then every
    view fitted on all pins, and the rejection threshold chosen on held-out users of that split
    (:mod:`pinid.evaluation.unknown`). ``style=False`` keeps the paper's image features (the
    pooled ones alone). ``engine`` runs the CNN (``"onnx"`` or ``"torch"``, the reference); the
    model records it and computes its queries' features with the same one.

    ``data`` is a manifest or folder tree, a :class:`~pinid.data.Dataset`, or records with the
    manifest's columns (a pandas DataFrame; image paths relative to ``root``).

    ``fits`` says where the independent fits (each view's Cs, the cross-fitting folds) run:
    this process (None) or a Dask cluster (:class:`pinid.models.distributed.OnCluster`); the
    model is the same.
    """
    from pinid.evaluation.unknown import unknown_users
    from pinid.features.dataset import prepare
    from pinid.features.extract import ImageFeatureExtractor
    from pinid.models.selection import tune_C
    from pinid.models.training import extractor_record, fit_identifier

    dataset = _dataset(data, root).drop_small_users(strict=strict)
    chosen_split = split_for(dataset, Path(split)) if split else make_split(dataset, seed)
    cnn = ImageFeatureExtractor(extractor, batch_size=batch_size, style=style, engine=engine)
    prepared = prepare(dataset, cnn, max_unreadable=max_unreadable, strict=strict)
    train_ids, val_ids = chosen_split.ids("train"), chosen_split.ids("val")
    tuned = tune_C(prepared.part(train_ids), prepared.part(val_ids), fits=fits)
    every_pin = {p.pin_id for p in prepared.dataset.pins}
    final, pins = fit_identifier(prepared, every_pin, tuned.C, similarity, fits=fits,
                                 tuned=(tuned, train_ids, val_ids))  # fmt: skip
    unknown = unknown_users(prepared, chosen_split, final, seed)
    meta = {"seed": seed, "reject_below": unknown.get("threshold"), "unknown_users": {
        k: unknown[k] for k in ("skipped", "rejection_target", "test_at_threshold") if k in unknown
    }}  # fmt: skip
    model = Model(final, pins, extractor_record(cnn), meta=meta)
    model._extractor = cnn
    return model


def link(
    data: str | Path | Dataset | Any,
    *,
    root: str | Path = ".",
    top: int = LINKS_TOP,
    extractor: str = DEFAULT_EXTRACTOR,
    style: bool = True,
    engine: str = DEFAULT_ENGINE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_unreadable: float = MAX_FAILURE_RATE,
) -> list[AccountPair]:
    """The accounts of a dataset most likely to be one person's, without a trained model: the
    image view's vectors are the CNN features standardised and normalised as the model's are
    (no classifier is fitted). Every account is kept, however few its pins."""
    from pinid.features.dataset import prepare
    from pinid.features.extract import ImageFeatureExtractor
    from pinid.models.linking import AccountLinker, account_pairs
    from pinid.models.modality import make_image_model

    _check_top(top, LINKS_MAX)
    dataset = _dataset(data, root)
    cnn = ImageFeatureExtractor(extractor, batch_size=batch_size, style=style, engine=engine)
    prepared = prepare(dataset, cnn, max_unreadable=max_unreadable, minimum=1)
    pins = prepared.dataset.pins
    vectors = make_image_model()[:-1].fit_transform(prepared.features.images)
    accounts = TrainingPins.of(pins)
    linker = AccountLinker().fit(accounts.texts, vectors, accounts.users)
    return account_pairs(linker, accounts, top)


def _dataset(data: str | Path | Dataset | Any, root: str | Path) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        return load_dataset(data)
    return dataset_from_records(_records(data), root)


def _records(data: Any) -> list[Mapping]:
    """Rows of a DataFrame (anything with ``to_dict("records")``) or a sequence of mappings."""
    if hasattr(data, "to_dict"):
        return data.to_dict("records")
    return list(data)


class PinClassifier(ClassifierMixin, BaseEstimator):
    """pinid's final model as a scikit-learn classifier, for ``cross_val_score`` and pipelines.

    ``X`` holds one pin a row, with ``text`` and ``image`` (a path relative to ``root``)
    columns: a pandas DataFrame or a list of dicts; a missing cell is no text or no image.
    ``fit`` does what :func:`train` does, so users with fewer than 3 pins are left out of
    ``classes_`` (with a warning). A pin of which nothing is usable (no known word, no
    readable image) gets a row of zeros from ``predict_proba``, and ``classes_[0]`` from
    ``predict``.

    Parameters
    ----------
    root : str or Path
        The folder image paths are relative to.
    seed : int
        Seed of the split on which C and the rejection threshold are chosen.
    extractor : str
        The ImageNet CNN for image features.
    similarity : {"joint", "text", "image"}
        The space of the evidence (the paper's refinement).

    Attributes
    ----------
    classes_ : ndarray of str
        The users, in the order of ``predict_proba``'s columns.
    model_ : Model
        The trained model.
    """

    def __init__(
        self,
        root: str | Path = ".",
        seed: int = 0,
        extractor: str = DEFAULT_EXTRACTOR,
        similarity: str = "joint",
    ) -> None:
        self.root = root
        self.seed = seed
        self.extractor = extractor
        self.similarity = similarity

    def fit(self, X: Any, y: Sequence[str]) -> PinClassifier:
        rows = _records(X)
        users = [str(u) for u in (y.tolist() if hasattr(y, "tolist") else y)]
        if len(rows) != len(users):
            raise ValueError(f"{len(rows)} pins but {len(users)} labels")
        records = [
            {"pin_id": str(i), "user": user, "text": cell_text(row.get("text")),
             "image": row.get("image")}
            for i, (row, user) in enumerate(zip(rows, users, strict=True))
        ]  # fmt: skip
        self.model_ = train(records, root=self.root, seed=self.seed, extractor=self.extractor,
                            similarity=self.similarity)  # fmt: skip
        self.classes_ = self.model_.final.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Each user's calibrated probability; users outside a pin's ten candidates get 0."""
        column = {user: i for i, user in enumerate(self.classes_)}
        answers = self._answers(X)
        proba = np.zeros((len(answers), len(self.classes_)))
        for i, answer in enumerate(answers):
            for candidate in answer.candidates:
                proba[i, column[candidate.user]] = candidate.probability
        return proba

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def _answers(self, X: Any) -> Answers:
        rows = _records(X)
        root = Path(self.root)
        images = [None if missing(r.get("image")) else root / str(r["image"]) for r in rows]
        return self.model_.identify_many([cell_text(r.get("text")) for r in rows], images)
