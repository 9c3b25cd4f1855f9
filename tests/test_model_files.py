"""Model folders: identical predictions after a round trip, and refusal of anything odd."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pinid.data import load_dataset
from pinid.errors import ModelFileError
from pinid.features.dataset import prepare
from pinid.features.extract import ImageFeatureExtractor
from pinid.models.io import load_model, save_model
from pinid.models.training import extractor_record, fit_identifier


@pytest.fixture(scope="module")
def fitted(sample_corpus, tmp_path_factory):
    extractor = ImageFeatureExtractor(progress=False)
    data = prepare(load_dataset(sample_corpus), extractor)
    ids = {p.pin_id for p in data.dataset.pins}
    model, pins = fit_identifier(data, ids, {"text": 10.0, "image": 10.0})
    folder = tmp_path_factory.mktemp("models") / "model"
    save_model(folder, model, pins, extractor_record(extractor))
    return model, data, folder


def test_round_trip_gives_identical_probabilities_and_rankings(fitted):
    model, data, folder = fitted
    loaded = load_model(folder).model
    np.testing.assert_array_equal(
        loaded.predict_proba(data.features), model.predict_proba(data.features)
    )
    a, b = model.rank(data.features), loaded.rank(data.features)
    np.testing.assert_array_equal(a.users, b.users)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert loaded.get_params() == model.get_params()


def test_model_json_records_versions_vocabulary_and_training_pins(fitted):
    _, data, folder = fitted
    doc = json.loads((folder / "model.json").read_text())
    assert doc["schema_version"] == 1
    assert {"numpy", "scipy", "scikit-learn"} <= set(doc["library_versions"])
    assert doc["params"]["C_text"] == 10.0 and doc["vocabulary"]
    assert doc["extractor"]["name"] == "efficientnet-lite0"
    assert doc["training_pins"]["pin_id"] == [p.pin_id for p in data.dataset.pins]
    assert not list(folder.parent.glob(".model.*"))  # no temporary folder left behind


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_any_changed_byte_in_the_arrays_is_refused(fitted, tmp_path):
    folder = _copy(fitted[2], tmp_path)
    data = bytearray((folder / "arrays.npz").read_bytes())
    data[100] ^= 1
    (folder / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match its recorded sha256"):
        load_model(folder)


def test_pickled_arrays_are_refused_even_with_a_matching_hash(fitted, tmp_path):
    folder = _copy(fitted[2], tmp_path)
    buffer = io.BytesIO()
    np.savez(buffer, text_idf=np.array([object()], dtype=object))
    (folder / "arrays.npz").write_bytes(buffer.getvalue())
    doc = json.loads((folder / "model.json").read_text())
    doc["arrays"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="inconsistent model files"):
        load_model(folder)


def test_unknown_schema_and_bad_json_are_refused(fitted, tmp_path):
    folder = _copy(fitted[2], tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**doc, "schema_version": 99}))
    with pytest.raises(ModelFileError, match="unknown model schema"):
        load_model(folder)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(folder)
