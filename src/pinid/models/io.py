"""Model folders without pickle: JSON for structure, ``.npz`` for arrays, sha256 checked.

Loading never imports or executes anything named in the files: the estimators are rebuilt
from pinid's own constructors plus the stored parameters and arrays, so a model folder handed
over by a stranger can at worst be refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import Normalizer

from pinid import __version__
from pinid._atomic import atomic_directory
from pinid.errors import ModelFileError
from pinid.features.efficientnet import get_spec
from pinid.features.preprocess import FITS
from pinid.models.identifier import PinIdentifier
from pinid.models.modality import make_image_model, make_text_model
from pinid.models.similarity import SPACES
from pinid.models.thumbnails import write_thumbnails

SCHEMA_VERSION = 1
MODEL_JSON = "model.json"
ARRAYS = "arrays.npz"
MAX_JSON_BYTES = 512 * 1024 * 1024
ARRAY_NAMES = (
    "text_idf", "text_coef", "text_intercept", "image_coef", "image_intercept",
    "train_text_data", "train_text_indices", "train_text_indptr", "train_image", "train_y",
)  # fmt: skip


@dataclass
class TrainingPins:
    """What evidence needs about each training pin, row-aligned with the model's arrays."""

    pin_ids: list[str]
    texts: list[str]
    images: list[str]
    users: list[str]


@dataclass
class SavedModel:
    model: PinIdentifier
    pins: TrainingPins
    extractor: dict
    meta: dict


def _arrays(model: PinIdentifier) -> dict[str, np.ndarray]:
    tfidf = model.text_model_.named_steps["tfidf"]
    text_lr = model.text_model_.named_steps["logistic"]
    image_lr = model.image_model_.named_steps["logistic"]
    train_text = sp.csr_matrix(model.train_text_)
    return {
        "text_idf": tfidf.idf_,
        "text_coef": text_lr.coef_,
        "text_intercept": text_lr.intercept_,
        "image_coef": image_lr.coef_,
        "image_intercept": image_lr.intercept_,
        "train_text_data": train_text.data,
        "train_text_indices": train_text.indices,
        "train_text_indptr": train_text.indptr,
        "train_image": model.train_image_,
        "train_y": model.train_y_,
    }


def save_model(
    folder: str | Path, model: PinIdentifier, pins: TrainingPins, extractor: dict, **meta
) -> Path:
    """Write the model folder (with evidence thumbnails) under a temporary name and rename it
    into place."""
    folder = Path(folder)
    buffer = io.BytesIO()
    np.savez(buffer, **_arrays(model))
    arrays = buffer.getvalue()
    tfidf = model.text_model_.named_steps["tfidf"]
    document = {
        "schema_version": SCHEMA_VERSION,
        "pinid_version": __version__,
        "library_versions": {
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "params": model.get_params(),
        "classes": [str(c) for c in model.classes_],
        "vocabulary": {w: int(i) for w, i in sorted(tfidf.vocabulary_.items())},
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


def _fail(folder: Path, problem: str) -> ModelFileError:
    return ModelFileError(f"{folder}: {problem}")


def load_model(folder: str | Path) -> SavedModel:
    """Rebuild a :class:`PinIdentifier` from a model folder, verifying the arrays' sha256."""
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
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise _fail(folder, f"unknown model schema (expected version {SCHEMA_VERSION})")
    try:
        arrays_bytes = (folder / ARRAYS).read_bytes()
    except OSError as exc:
        raise _fail(folder, f"cannot read {ARRAYS} ({exc.strerror})") from None
    if hashlib.sha256(arrays_bytes).hexdigest() != str(doc.get("arrays", {}).get("sha256")):
        raise _fail(folder, f"{ARRAYS} does not match its recorded sha256 (tampered or damaged)")
    # The hash only proves the arrays are the ones model.json names; model.json may itself be
    # hostile, so everything is checked as if it came from a stranger.
    try:
        arrays = _read_arrays(arrays_bytes)
        model = _rebuild(doc, arrays)
        pins = TrainingPins(
            pin_ids=[str(v) for v in doc["training_pins"]["pin_id"]],
            texts=[str(v) for v in doc["training_pins"]["text"]],
            images=[str(v) for v in doc["training_pins"]["image"]],
            users=[str(v) for v in doc["training_pins"]["user"]],
        )
        _check_consistent(model, pins, doc)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, MemoryError,
            zipfile.BadZipFile) as exc:  # fmt: skip
        raise _fail(folder, f"inconsistent model files ({type(exc).__name__}: {exc})") from None
    return SavedModel(model, pins, doc["extractor"], doc.get("meta", {}))


_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _read_arrays(data: bytes) -> dict[str, np.ndarray]:
    """The expected arrays only, each vetted from its header before any memory is allocated."""
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = {info.filename: info for info in archive.infolist()}
        if set(names) != {f"{name}.npy" for name in ARRAY_NAMES}:
            raise ValueError(f"{ARRAYS} must hold exactly {', '.join(ARRAY_NAMES)}")
        for name in ARRAY_NAMES:
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
    return arrays


def _check_consistent(model: PinIdentifier, pins: TrainingPins, doc: dict) -> None:
    n_classes, n_train = len(model.classes_), model.train_image_.shape[0]
    if len({len(pins.pin_ids), len(pins.texts), len(pins.images), len(pins.users), n_train,
            len(model.train_y_), model.train_text_.shape[0]}) != 1:  # fmt: skip
        raise ValueError("training pins and arrays disagree in length")
    if n_classes < 2 or len(set(model.classes_)) != n_classes:
        raise ValueError("need two or more distinct classes")
    if set(np.unique(model.train_y_).tolist()) != set(range(n_classes)):
        raise ValueError("every class needs training pins, and only those classes")
    model.train_text_.check_format(full_check=True)
    vocabulary = model.text_model_.named_steps["tfidf"].vocabulary_
    if sorted(vocabulary.values()) != list(range(len(vocabulary))):
        raise ValueError("vocabulary indices must be 0..n-1")
    rows = 1 if n_classes == 2 else n_classes
    for step, width in ((model.text_model_, len(vocabulary)),
                        (model.image_model_, model.train_image_.shape[1])):  # fmt: skip
        lr = step.named_steps["logistic"]
        if lr.coef_.shape != (rows, width) or lr.intercept_.shape != (rows,):
            raise ValueError("classifier weights have the wrong shape")
    if model.text_model_.named_steps["tfidf"].idf_.shape != (len(vocabulary),):
        raise ValueError("idf has the wrong length")
    if model.similarity not in SPACES or not (isinstance(model.top_k, int) and model.top_k > 0):
        raise ValueError("invalid similarity or top_k")
    extractor = doc["extractor"]
    get_spec(extractor["name"])
    if extractor["fit"] not in FITS or not isinstance(extractor["id"], str):
        raise ValueError("invalid extractor record")


def _logistic(C: float, classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray):
    lr = LogisticRegression(C=C)
    lr.classes_, lr.coef_, lr.intercept_ = classes, coef, intercept
    lr.n_features_in_ = coef.shape[1]
    lr.n_iter_ = np.zeros(1, dtype=np.int32)
    return lr


def _rebuild(doc: dict, a: dict[str, np.ndarray]) -> PinIdentifier:
    params = doc["params"]
    model = PinIdentifier(**{k: params[k] for k in ("C_text", "C_image", "similarity", "top_k")})
    classes = np.array(doc["classes"])
    model.classes_ = classes

    text = make_text_model(params["C_text"])
    tfidf = text.named_steps["tfidf"]
    tfidf.vocabulary_ = {str(w): int(i) for w, i in doc["vocabulary"].items()}
    tfidf.idf_ = a["text_idf"]
    text.steps[-1] = (
        "logistic",
        _logistic(params["C_text"], classes, a["text_coef"], a["text_intercept"]),
    )
    model.text_model_ = text

    image = make_image_model(params["C_image"])
    normaliser: Normalizer = image.named_steps["l2"]
    normaliser.n_features_in_ = int(doc["n_image_features"])
    image.steps[-1] = (
        "logistic",
        _logistic(params["C_image"], classes, a["image_coef"], a["image_intercept"]),
    )
    model.image_model_ = image

    n_train = a["train_image"].shape[0]
    model.train_text_ = sp.csr_matrix(
        (a["train_text_data"], a["train_text_indices"], a["train_text_indptr"]),
        shape=(n_train, len(tfidf.vocabulary_)),
    )
    model.train_image_ = a["train_image"]
    model.train_y_ = a["train_y"]
    model.refiners_ = {}
    return model
