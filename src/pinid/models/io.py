"""Model folders without pickle: JSON for structure, ``.npz`` for arrays, sha256 checked.

Loading never imports or executes anything named in the files: the estimators are rebuilt
from pinid's own constructors plus the stored parameters and arrays, so a model folder handed
over by a stranger can at worst be refused.

The format has a version per part (``PARTS``) and a loader per part version, so a change to
one part adds a loader beside the old one instead of breaking every saved model; folders of
schema 2 (before parts had versions) load as they are and ``pinid model upgrade`` rewrites them.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import sklearn

from pinid import __version__
from pinid._atomic import atomic_directory, atomic_write_text, output_lock
from pinid.data.pins import Pin
from pinid.errors import ModelFileError
from pinid.features import ENGINES
from pinid.features.specs import FITS, get_spec
from pinid.models.final_model import FinalModel, Views, n_candidate_features
from pinid.models.fusion import check_cascade_weights
from pinid.models.modality import make_char_model, make_image_model, make_text_model
from pinid.models.paper_model import PaperModel
from pinid.models.reranker import Reranker
from pinid.models.similarity import SPACES
from pinid.models.thumbnails import write_thumbnails

SCHEMA_VERSION = 3
PARTS = {"words": 1, "chars": 1, "image": 2, "training_pins": 1, "reranker": 3}
"""The version of each part this pinid writes."""
MODEL_JSON = "model.json"
ARRAYS = "arrays.npz"
MAX_JSON_BYTES = 512 * 1024 * 1024
ARRAY_NAMES = (
    "text_idf", "text_coef", "text_intercept", "image_coef", "image_intercept",
    "train_text_data", "train_text_indices", "train_text_indptr", "train_image", "train_y",
    "char_idf", "char_coef", "char_intercept", "rerank_mean", "rerank_scale", "rerank_coef",
    "image_mean", "image_scale",
)  # fmt: skip
IMAGE_V2_ARRAYS = ("image_mean", "image_scale")
"""Arrays only version 2 of the image part has (its style blocks' standardisation)."""


@dataclass
class TrainingPins:
    """What evidence needs about each training pin, row-aligned with the model's arrays."""

    pin_ids: list[str]
    texts: list[str]
    images: list[str]
    users: list[str]

    @classmethod
    def of(cls, pins: Sequence[Pin]) -> TrainingPins:
        """The dataset's pins as evidence names them (images by their resolved paths)."""
        return cls(
            pin_ids=[p.pin_id for p in pins],
            texts=[p.text for p in pins],
            images=[str(p.image.resolve()) for p in pins],
            users=[p.user for p in pins],
        )


@dataclass
class SavedModel:
    model: FinalModel
    pins: TrainingPins
    extractor: dict
    meta: dict
    identity: str
    """The sha256 of its arrays: which model this is."""


def _arrays(reranked: FinalModel) -> dict[str, np.ndarray]:
    model, char, reranker = reranked.views_.base, reranked.views_.char, reranked.reranker_
    tfidf = model.text_model_.named_steps["tfidf"]
    text_lr = model.text_model_.named_steps["logistic"]
    image_lr = model.image_model_.named_steps["logistic"]
    blocks = model.image_model_.named_steps["blocks"]
    char_lr = char.named_steps["logistic"]
    train_text = sp.csr_matrix(model.train_text_)
    return {
        "char_idf": char.named_steps["tfidf"].idf_,
        "char_coef": char_lr.coef_,
        "char_intercept": char_lr.intercept_,
        "rerank_mean": reranker.mean_,
        "rerank_scale": reranker.scale_,
        "rerank_coef": reranker.coef_,
        "text_idf": tfidf.idf_,
        "text_coef": text_lr.coef_,
        "text_intercept": text_lr.intercept_,
        "image_coef": image_lr.coef_,
        "image_intercept": image_lr.intercept_,
        "image_mean": blocks.mean_,
        "image_scale": blocks.scale_,
        "train_text_data": train_text.data,
        "train_text_indices": train_text.indices,
        "train_text_indptr": train_text.indptr,
        "train_image": model.train_image_,
        "train_y": model.train_y_,
    }


def save_model(
    folder: str | Path, reranked: FinalModel, pins: TrainingPins, extractor: dict, **meta
) -> Path:
    """Write the model folder (with evidence thumbnails) under a temporary name and rename it
    into place."""
    folder = Path(folder)
    buffer = io.BytesIO()
    np.savez(buffer, **_arrays(reranked))
    arrays = buffer.getvalue()
    model = reranked.views_.base
    tfidf = model.text_model_.named_steps["tfidf"]
    char_tfidf = reranked.views_.char.named_steps["tfidf"]
    document = {
        "schema_version": SCHEMA_VERSION,
        "parts": PARTS,
        "pinid_version": __version__,
        "library_versions": {
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "params": reranked.get_params(),
        "classes": [str(c) for c in model.classes_],
        "vocabulary": {w: int(i) for w, i in sorted(tfidf.vocabulary_.items())},
        "char_vocabulary": {g: int(i) for g, i in sorted(char_tfidf.vocabulary_.items())},
        "temperature": reranked.temperature_,
        "n_image_features": int(model.train_image_.shape[1]),
        "extractor": extractor,
        "training_pins": {
            "pin_id": pins.pin_ids,
            "text": pins.texts,
            "image": pins.images,
            "user": pins.users,
        },
        "arrays": {"file": ARRAYS, "sha256": hashlib.sha256(arrays).hexdigest()},
        "meta": meta,
    }
    with atomic_directory(folder, marker=MODEL_JSON) as tmp:
        write_thumbnails(pins.images, tmp)
        (tmp / ARRAYS).write_bytes(arrays)
        (tmp / MODEL_JSON).write_text(
            json.dumps(document, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return folder


def rejection_threshold(meta: dict, where: str, value: float | str | None) -> float | None:
    """``value`` as a threshold; ``"auto"`` is the one chosen on held-out users when the model
    was trained (``meta["reject_below"]``), or none for a model written before pinid 0.3 that
    has none (``suggested_reject_below``: one written by ``pinid experiment`` of 0.2)."""
    if value == "auto":
        value = meta.get("reject_below", meta.get("suggested_reject_below"))
        if value is not None and not isinstance(value, float):
            raise ModelFileError(f"{where}: its rejection threshold is not a number: {value!r}")
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ModelFileError(f"the rejection threshold must be between 0 and 1, not {value}")
    return None if value is None else float(value)


def _fail(folder: Path, problem: str) -> ModelFileError:
    return ModelFileError(f"{folder}: {problem}")


def read_document(folder: str | Path) -> tuple[dict, int]:
    """``model.json`` of a model folder of any schema pinid knows, as the current schema, and
    the schema it was written in."""
    folder = Path(folder)
    doc_path = folder / MODEL_JSON
    if not doc_path.is_file():
        raise _fail(folder, f"not a pinid model folder (no {MODEL_JSON})")
    if doc_path.stat().st_size > MAX_JSON_BYTES:
        raise _fail(folder, f"{MODEL_JSON} is implausibly large")
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(folder, f"{MODEL_JSON} is not valid JSON ({exc})") from None
    schema = doc.get("schema_version") if isinstance(doc, dict) else None
    if schema == 2:  # before parts had versions: every part is of version 1
        doc = {**doc, "schema_version": SCHEMA_VERSION, "parts": dict.fromkeys(PARTS, 1)}
    elif schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise _fail(
            folder, f"unknown model schema (this pinid reads versions 2 and {SCHEMA_VERSION})"
        )
    parts = doc.get("parts")
    if not isinstance(parts, dict) or set(parts) != set(PARTS):
        raise _fail(folder, f"{MODEL_JSON} must give the version of each of {', '.join(PARTS)}")
    for part, version in parts.items():
        if type(version) is not int or (part, version) not in _PART_LOADERS:
            raise _fail(
                folder, f"its {part} are of version {version!r}, which this pinid cannot read"
            )
    arrays = doc.get("arrays")
    if not (isinstance(arrays, dict) and isinstance(arrays.get("sha256"), str)):
        raise _fail(folder, f"{MODEL_JSON} must record the sha256 of {ARRAYS}")
    return doc, schema


def load_model(folder: str | Path) -> SavedModel:
    """Rebuild a :class:`FinalModel` from a model folder, verifying the arrays' sha256."""
    folder = Path(folder)
    doc, _ = read_document(folder)
    try:
        arrays_bytes = (folder / ARRAYS).read_bytes()
    except OSError as exc:
        raise _fail(folder, f"cannot read {ARRAYS} ({exc.strerror})") from None
    if hashlib.sha256(arrays_bytes).hexdigest() != doc["arrays"]["sha256"]:
        raise _fail(folder, f"{ARRAYS} does not match its recorded sha256 (tampered or damaged)")
    # The hash only proves the arrays are the ones model.json names; model.json may itself be
    # hostile, so everything is checked as if it came from a stranger.
    try:
        arrays = _read_arrays(arrays_bytes, doc["parts"])
        classes = _classes(doc)

        def load(part: str, *needs):
            return _PART_LOADERS[part, doc["parts"][part]](doc, arrays, classes, *needs)

        words, image, chars = load("words"), load("image"), load("chars")
        training, pins = load("training_pins", len(words.named_steps["tfidf"].vocabulary_))
        reranker, temperature, weights, char_similarity = load("reranker")
        model = _paper_model(doc, classes, words, image, training)
        _check_consistent(model, pins, doc)
        final = _final_model(doc, model, chars, (reranker, temperature, weights, char_similarity),
                             pins)  # fmt: skip
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, MemoryError,
            zipfile.BadZipFile) as exc:  # fmt: skip
        raise _fail(folder, f"inconsistent model files ({type(exc).__name__}: {exc})") from None
    return SavedModel(final, pins, doc["extractor"], doc.get("meta", {}), doc["arrays"]["sha256"])


def upgrade(folder: str | Path) -> bool:
    """Rewrite the ``model.json`` of a model folder of an earlier schema in the current one
    (arrays and thumbnails stay as they are); False if it is current already."""
    folder = Path(folder)
    with output_lock(folder):  # no `pinid train` replaces the folder meanwhile
        load_model(folder)  # refuses what it could not load, before anything is written
        doc, schema = read_document(folder)
        if schema == SCHEMA_VERSION:
            return False
        doc["upgraded"] = {"from_schema": schema, "by_pinid": __version__}
        atomic_write_text(folder / MODEL_JSON, json.dumps(doc, ensure_ascii=False) + "\n")
    return True


_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _read_arrays(data: bytes, parts: dict[str, int]) -> dict[str, np.ndarray]:
    """The expected arrays only, each vetted from its header before any memory is allocated."""
    expected = [n for n in ARRAY_NAMES if parts["image"] >= 2 or n not in IMAGE_V2_ARRAYS]
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = {info.filename: info for info in archive.infolist()}
        if set(names) != {f"{name}.npy" for name in expected}:
            raise ValueError(f"{ARRAYS} must hold exactly {', '.join(expected)}")
        for name in expected:
            info = names[f"{name}.npy"]
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data):
                raise ValueError(f"{name}: compressed or oversized member")
            with archive.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version not in _HEADER_READERS:
                    raise ValueError(f"{name}: unsupported .npy version {version}")
                shape, _, dtype = _HEADER_READERS[version](fh)
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise ValueError(f"{name}: dtype {dtype} is not numeric")
                if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > info.file_size:
                    raise ValueError(f"{name}: header claims more data than the file holds")
            with archive.open(info) as fh:
                arrays[name] = np.lib.format.read_array(fh, allow_pickle=False)
            if arrays[name].dtype.kind == "f" and not np.isfinite(arrays[name]).all():
                raise ValueError(f"{name}: holds NaN or infinite values")
    return arrays


def _classes(doc: dict) -> np.ndarray:
    classes = np.array([str(c) for c in doc["classes"]])
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError("need two or more distinct classes")
    return classes


def _check_weights(lr, classes: np.ndarray, width: int, what: str) -> None:
    rows = 1 if len(classes) == 2 else len(classes)
    if lr.coef_.shape != (rows, width) or lr.intercept_.shape != (rows,):
        raise ValueError(f"{what} classifier weights have the wrong shape")


def _vocabulary(entries: dict, what: str) -> dict[str, int]:
    vocabulary = {str(w): int(i) for w, i in entries.items()}
    if sorted(vocabulary.values()) != list(range(len(vocabulary))):
        raise ValueError(f"{what} vocabulary indices must be 0..n-1")
    return vocabulary


def _check_consistent(model: PaperModel, pins: TrainingPins, doc: dict) -> None:
    """What ties the parts together: one row per training pin everywhere, every user with
    pins, the image view as wide as the training images, sane settings."""
    n_classes, n_train = len(model.classes_), model.train_image_.shape[0]
    if len({len(pins.pin_ids), len(pins.texts), len(pins.images), len(pins.users), n_train,
            len(model.train_y_), model.train_text_.shape[0]}) != 1:  # fmt: skip
        raise ValueError("training pins and arrays disagree in length")
    if set(np.unique(model.train_y_).tolist()) != set(range(n_classes)):
        raise ValueError("every class needs training pins, and only those classes")
    _check_weights(model.image_model_.named_steps["logistic"], model.classes_,
                   model.train_image_.shape[1], "image")  # fmt: skip
    top_k = model.top_k
    if (
        model.similarity not in SPACES
        or isinstance(top_k, bool)
        or not (isinstance(top_k, int) and top_k > 0)
    ):
        raise ValueError("invalid similarity or top_k")
    extractor = doc["extractor"]
    get_spec(extractor["name"])
    if (
        extractor["fit"] not in FITS
        or not isinstance(extractor["id"], str)
        or not isinstance(extractor.get("style", False), bool)
        or extractor.get("engine", "torch") not in ENGINES
    ):
        raise ValueError("invalid extractor record")


def _fitted(lr, classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray):
    """``lr`` (a logistic regression step, unfitted) given stored weights."""
    # feature-major, as fitted (see PreconditionedLogisticRegression.fit)
    lr.classes_, lr.coef_, lr.intercept_ = classes, np.asfortranarray(coef), intercept
    lr.n_features_in_ = coef.shape[1]
    lr.n_iter_ = np.zeros(1, dtype=np.int32)
    return lr


def _words_v1(doc: dict, a: dict[str, np.ndarray], classes: np.ndarray):
    """The word view: tf-idf dictionary and idf, and its logistic regression."""
    arrays = a["text_idf"], a["text_coef"], a["text_intercept"]
    model = make_text_model(doc["params"]["C_text"])
    return _tfidf_view(model, doc["vocabulary"], *arrays, classes, "word")


def _image_v1(doc: dict, a: dict[str, np.ndarray], classes: np.ndarray):
    """The image view of pinid 0.2: pooled features only, L2 normalisation and its logistic
    regression."""
    return _image_view(doc, a, classes, np.zeros(0, np.float32), np.zeros(0, np.float32))


def _image_v2(doc: dict, a: dict[str, np.ndarray], classes: np.ndarray):
    """The image view: pooled and style blocks standardised and normalised each on its own
    (none when the features are the pooled ones alone), L2 normalisation, logistic
    regression."""
    return _image_view(doc, a, classes, a["image_mean"], a["image_scale"])


def _image_view(doc: dict, a: dict[str, np.ndarray], classes: np.ndarray, mean, scale):
    width = int(doc["n_image_features"])
    image = make_image_model(doc["params"]["C_image"])
    lr = _fitted(image.named_steps["logistic"], classes, a["image_coef"], a["image_intercept"])
    _check_weights(lr, classes, width, "image")
    blocks = image.named_steps["blocks"]
    if mean.shape != scale.shape or mean.ndim != 1 or len(mean) not in (0, width):
        raise ValueError("image standardisation has the wrong shape")
    if len(mean) and (width <= blocks.pooled or not (scale > 0).all()):
        raise ValueError("image standardisation needs a style block and positive scales")
    blocks.mean_, blocks.scale_, blocks.n_features_in_ = mean, scale, width
    image.named_steps["l2"].n_features_in_ = width
    return image


def _training_pins_v1(doc: dict, a: dict[str, np.ndarray], classes: np.ndarray, n_words: int):
    """The training pins: word vectors (``n_words`` wide), image features and users (arrays),
    and what evidence shows of each (ids, texts, image paths)."""
    n_train = a["train_image"].shape[0]
    train_text = sp.csr_matrix(
        (a["train_text_data"], a["train_text_indices"], a["train_text_indptr"]),
        shape=(n_train, n_words),
    )
    train_text.check_format(full_check=True)
    listed = doc["training_pins"]
    pins = TrainingPins(
        pin_ids=[str(v) for v in listed["pin_id"]],
        texts=[str(v) for v in listed["text"]],
        images=[str(v) for v in listed["image"]],
        users=[str(v) for v in listed["user"]],
    )
    return (train_text, a["train_image"], a["train_y"]), pins


def _chars_v1(doc: dict, a: dict[str, np.ndarray], classes: np.ndarray):
    """The character n-gram view: tf-idf and its logistic regression."""
    arrays = a["char_idf"], a["char_coef"], a["char_intercept"]
    model = make_char_model(doc["params"]["C_char"])
    return _tfidf_view(model, doc["char_vocabulary"], *arrays, classes, "character")


def _tfidf_view(model, entries: dict, idf, coef, intercept, classes: np.ndarray, what: str):
    """A text view (tf-idf, then logistic regression) from its stored dictionary and arrays."""
    tfidf = model.named_steps["tfidf"]
    tfidf.vocabulary_ = _vocabulary(entries, what)
    if idf.shape != (len(tfidf.vocabulary_),):
        raise ValueError(f"{what} idf has the wrong length")
    tfidf.idf_ = idf
    lr = _fitted(model.named_steps["logistic"], classes, coef, intercept)
    _check_weights(lr, classes, len(tfidf.vocabulary_), what)
    return model


def _reranker_v1(doc: dict, a: dict[str, np.ndarray], classes: np.ndarray,
                 char_similarity: bool = True):  # fmt: skip
    """The re-ranker's weights and the temperature of its probabilities (its features with
    the character space's similarities, as every re-ranker before version 3 had them)."""
    reranker = Reranker(doc["params"]["rerank_alpha"])
    reranker.mean_, reranker.scale_, reranker.coef_ = (
        a["rerank_mean"], a["rerank_scale"], a["rerank_coef"],
    )  # fmt: skip
    if {v.shape for v in (reranker.mean_, reranker.scale_, reranker.coef_)} != {
        (n_candidate_features(char_similarity),)
    }:
        raise ValueError("re-ranker weights have the wrong shape")
    if not (reranker.scale_ > 0).all():
        raise ValueError("re-ranker scales must be positive")
    temperature = float(doc["temperature"])
    if not np.exp(-4.0) <= temperature <= np.exp(4.0):  # the range fit_temperature searches
        raise ValueError("invalid temperature")
    return reranker, temperature, (1.0, 1.0, 1.0), True  # candidates from the plain cascade


def _reranker_v2(doc: dict, a: dict[str, np.ndarray], classes: np.ndarray):
    """Version 1's, and the weights of the cascade its candidates come from."""
    reranker, temperature, _, _ = _reranker_v1(doc, a, classes)
    return reranker, temperature, check_cascade_weights(doc["params"]["cascade_weights"]), True


def _reranker_v3(doc: dict, a: dict[str, np.ndarray], classes: np.ndarray):
    """Version 2's, and whether its features include the character space's similarities."""
    char_similarity = doc["params"]["char_similarity"]
    if not isinstance(char_similarity, bool):
        raise ValueError("char_similarity must be true or false")
    reranker, temperature, _, _ = _reranker_v1(doc, a, classes, char_similarity)
    weights = check_cascade_weights(doc["params"]["cascade_weights"])
    return reranker, temperature, weights, char_similarity


_PART_LOADERS = {
    ("words", 1): _words_v1,
    ("image", 1): _image_v1,
    ("image", 2): _image_v2,
    ("training_pins", 1): _training_pins_v1,
    ("chars", 1): _chars_v1,
    ("reranker", 1): _reranker_v1,
    ("reranker", 2): _reranker_v2,
    ("reranker", 3): _reranker_v3,
}
"""(part, version) -> its loader; a new version of a part adds a loader here."""


def _paper_model(doc: dict, classes: np.ndarray, words, image, training) -> PaperModel:
    params = doc["params"]
    model = PaperModel(**{k: params[k] for k in ("C_text", "C_image", "similarity", "top_k")})
    model.classes_ = classes
    model.text_model_, model.image_model_ = words, image
    model.train_text_, model.train_image_, model.train_y_ = training
    model.refiners_ = {}
    return model


def _final_model(
    doc: dict, base: PaperModel, char, reranked: tuple[Reranker, float, tuple, bool],
    pins: TrainingPins,
) -> FinalModel:  # fmt: skip
    """The char view, the re-ranker part (``reranked``: the re-ranker, its temperature, the
    weights of the cascade its candidates come from, whether it takes the character space's
    similarities) around the paper's model ``base``."""
    reranker, temperature, weights, char_similarity = reranked
    if not isinstance(doc.get("meta", {}), dict):
        raise ValueError("meta must be an object")
    params = doc["params"]
    _check_C(params)
    model = FinalModel(**{k: params[k] for k in (
        "C_text", "C_char", "C_image", "rerank_alpha", "similarity", "top_k", "n_folds",
        "random_state")}, rerank_pins=params.get("rerank_pins"),
        cascade_weights=weights, char_similarity=char_similarity)  # fmt: skip
    model.views_ = Views(base, char, pins.texts, model.top_k, weights=weights,
                         char_similarity=char_similarity)  # fmt: skip
    model.classes_, model.reranker_, model.temperature_ = base.classes_, reranker, temperature
    return model


def _check_C(params: dict) -> None:
    """Each view's C a positive number, the character view's possibly None (its users'
    centroids): a C is not used once the model is fitted, but a stranger's value would travel
    on into the model's parameters."""
    for name in ("C_text", "C_char", "C_image"):
        C = params[name]
        if C is None and name == "C_char":
            continue
        if type(C) not in (int, float) or not 0 < C < math.inf:
            raise ValueError(f"{name} must be a positive number, not {C!r}")
