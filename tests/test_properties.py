"""Property-based tests (hypothesis): whatever the input, a result or one of pinid's own errors.

Parsers get arbitrary bytes and arbitrary JSON; the text cleaner arbitrary Unicode; the image
loader arbitrary bytes, also behind real format signatures so the decoders themselves are
reached; model files random fitted models (round trip) and random single-byte changes.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from pinid.data import load_dataset
from pinid.errors import DataError, ModelFileError, PinidError
from pinid.features.images import MAX_JPEG_PIXELS, MAX_PIXELS, UnreadableImage, decode_image
from pinid.features.pin_features import PinFeatures
from pinid.features.specs import FEATURE_DIM
from pinid.features.text import MAX_WORD_LENGTH, tokenize
from pinid.models.final_model import FinalModel
from pinid.models.io import TrainingPins, load_model, save_model

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


def _load_manifest_bytes(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "img.png").write_bytes(b"")
        path = Path(folder) / f"manifest{suffix}"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                dataset = load_dataset(path)
            except PinidError:
                return
        assert len(dataset) >= 1 and all(p.image.is_relative_to(folder) for p in dataset.pins)


@QUICK
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_any_manifest_bytes_load_or_raise_pinid_error(data, suffix):
    _load_manifest_bytes(data, suffix)


_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
_row = st.fixed_dictionaries(
    {},
    optional={
        "pin_id": _json_value | st.text(max_size=8),
        "user": _json_value | st.sampled_from(["alice", "bob"]),
        "text": _json_value,
        "image": _json_value | st.sampled_from(["img.png", "../img.png", "/etc/passwd", "x/"]),
        "board": _json_value,
    },
)


@QUICK
@given(rows=st.lists(_row, min_size=1, max_size=6))
def test_any_json_rows_load_or_raise_pinid_error(rows):
    _load_manifest_bytes("".join(json.dumps(r) + "\n" for r in rows).encode(), ".jsonl")


@QUICK
@given(text=st.text(max_size=300))
def test_tokens_are_clean_words_whatever_the_text(text):
    tokens = tokenize(text)
    for token in tokens:
        assert 1 < len(token) <= MAX_WORD_LENGTH
        assert token not in ENGLISH_STOP_WORDS
        assert not any(c.isspace() or c in "#/:_" for c in token)
        assert token == token.casefold()
    assert tokenize(" ".join(tokens)) == tokens  # cleaning a clean text changes nothing


def _signature_of(fmt: str) -> bytes:
    if fmt == "SVG":
        return b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, fmt)
    return buffer.getvalue()


_prefix = st.sampled_from(["", "PNG", "JPEG", "GIF", "WEBP", "SVG", "HEIF", "AVIF"]).map(
    lambda fmt: b"" if not fmt else _signature_of(fmt)
)


@QUICK
@given(prefix=_prefix, cut=st.integers(0, 400), tail=st.binary(max_size=400))
@example(prefix=_signature_of("AVIF"), cut=304, tail=b"\xff" * 20)  # a damaged AVIF frame
def test_any_image_bytes_decode_to_rgb_or_raise_unreadable(prefix, cut, tail):
    data = prefix[: cut or len(prefix)] + tail
    try:
        image = decode_image(data)
    except UnreadableImage as exc:
        assert exc.kind in ("oversize", "format", "damaged") and str(exc)
        assert "\n" not in str(exc)  # one line, whatever the decoder said
        return
    assert image.mode == "RGB" and image.width > 0 and image.height > 0


@SLOW
@given(width=st.integers(1, 65535), height=st.integers(1, 65535),
       progressive=st.booleans())  # fmt: skip
def test_a_jpeg_of_any_claimed_size_is_refused_or_decoded_small(width, height, progressive):
    """A JPEG's header may claim any size up to 65535 x 65535 (a phone's 48-200 MP, or a
    bomb): over its kind's limit it is refused before decoding, and what is decoded never
    exceeds the pixel limit."""
    limit = MAX_PIXELS if progressive else MAX_JPEG_PIXELS
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "JPEG", progressive=progressive)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    try:
        image = decode_image(bytes(data))
    except UnreadableImage as exc:
        assert exc.kind in ("oversize", "damaged") and "\n" not in str(exc)
        assert exc.kind == "oversize" or width * height <= limit
        return
    assert width * height <= limit and image.width * image.height <= MAX_PIXELS


_WORDS = ["apple", "pear", "plum", "tree", "leaf", "rose", "star", "moon"]


@st.composite
def _training_set(draw):
    users = draw(st.integers(2, 4))
    per_user = draw(st.integers(3, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    texts = [" ".join(rng.choice(_WORDS, size=rng.integers(1, 5))) for _ in range(users * per_user)]
    images = rng.normal(size=(users * per_user, FEATURE_DIM)).astype(np.float32)
    y = [f"user{u}" for u in range(users) for _ in range(per_user)]
    C = draw(st.sampled_from([0.1, 1.0, 10.0]))
    similarity = draw(st.sampled_from(["joint", "text", "image"]))
    return PinFeatures(texts, images), y, C, similarity


EXTRACTOR = {"name": "efficientnet-lite0", "fit": "pad", "id": "property-test"}


def _save(folder: Path, model: FinalModel, X: PinFeatures, y: list[str]) -> Path:
    ids = [f"p{i}" for i in range(len(y))]
    pins = TrainingPins(ids, list(X.texts), [f"missing/{i}.png" for i in ids], list(y))
    return save_model(folder / "model", model, pins, EXTRACTOR)


@pytest.mark.slow
@SLOW
@given(training=_training_set())
def test_a_saved_model_loads_with_identical_probabilities_and_rankings(training):
    X, y, C, similarity = training
    try:
        model = FinalModel(C_text=C, C_char=C, C_image=C, similarity=similarity).fit(X, y)
    except DataError:  # a drawn corpus too small to fit (its folds share no word) is refused,
        reject()  # which is right; the property is about the models that fit
    with tempfile.TemporaryDirectory() as folder:
        loaded = load_model(_save(Path(folder), model, X, y)).model
    for name, view in model.views_.probabilities(X).items():
        np.testing.assert_array_equal(loaded.views_.probabilities(X)[name], view)
    a, b = model.rank(X), loaded.rank(X)
    np.testing.assert_array_equal(a.users, b.users)
    np.testing.assert_array_equal(a.probability, b.probability)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    y = [f"user{u}" for u in range(3) for _ in range(4)]
    X = PinFeatures(
        [" ".join(rng.choice(_WORDS, size=3)) for _ in y],
        rng.normal(size=(len(y), FEATURE_DIM)).astype(np.float32),
    )
    return _save(tmp_path_factory.mktemp("saved"), FinalModel().fit(X, y), X, y)


@QUICK
@given(position=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255))
def test_any_changed_byte_of_the_arrays_is_refused(saved_model, position, flip):
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "model"
        shutil.copytree(saved_model, copy)
        arrays = bytearray((copy / "arrays.npz").read_bytes())
        arrays[int(position * len(arrays))] ^= flip
        (copy / "arrays.npz").write_bytes(bytes(arrays))
        with pytest.raises(ModelFileError, match="sha256"):
            load_model(copy)
