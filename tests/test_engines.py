"""The CNN engines: ONNX Runtime gives torch's features, and the two never share a cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import pinid
from pinid.cli import main
from pinid.data import load_dataset
from pinid.features.extract import ImageFeatureExtractor
from pinid.models.training import extractor_record

SCHEMA2 = Path(__file__).parent / "fixtures" / "model-schema2"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def renders(sample_corpus) -> list[Path]:
    return [pin.image for pin in load_dataset(sample_corpus).pins]


@pytest.mark.parametrize("style", [True, False])
def test_onnx_features_are_torchs_on_real_renders(renders, tmp_path, style):
    def features(engine: str) -> np.ndarray:
        extractor = ImageFeatureExtractor(
            cache_root=tmp_path / engine, progress=False, engine=engine, style=style
        )
        result = extractor.extract(renders)
        assert result.readable.all() and result.features.shape[1] == extractor.feature_dim
        return result.features

    torch_features, onnx_features = features("torch"), features("onnx")
    assert _cosines(torch_features, onnx_features).min() > 0.99999
    np.testing.assert_allclose(onnx_features, torch_features, atol=5e-4)


def test_onnx_rows_do_not_depend_on_the_batch(renders, tmp_path):
    one, four = (
        ImageFeatureExtractor(cache_root=tmp_path / str(b), progress=False, batch_size=b)
        .extract(renders[:6])
        .features
        for b in (1, 4)
    )
    np.testing.assert_allclose(one, four, rtol=1e-5, atol=1e-5)


def test_ids_name_the_engine_and_torch_keeps_the_id_models_were_trained_with(tmp_path):
    torch_id = ImageFeatureExtractor(cache_root=tmp_path, engine="torch").extractor_id
    onnx_id = ImageFeatureExtractor(cache_root=tmp_path).extractor_id
    assert onnx_id == f"{torch_id}-onnx-fp32"
    old = json.loads((SCHEMA2 / "model.json").read_text())["extractor"]
    pooled = ImageFeatureExtractor(cache_root=tmp_path, engine="torch", style=False)
    assert pooled.extractor_id == old["id"]  # pinid 0.2's torch model: still its id
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'; valid: onnx, torch"):
        ImageFeatureExtractor(cache_root=tmp_path, engine="tensorrt")


def test_a_cache_built_by_one_engine_is_not_read_by_the_other(renders, tmp_path):
    paths = renders[:4]
    first = ImageFeatureExtractor(cache_root=tmp_path, progress=False, engine="torch")
    assert first.extract(paths).computed == 4
    other = ImageFeatureExtractor(cache_root=tmp_path, progress=False, engine="onnx")
    assert (other.extract(paths).computed, other.extract(paths).from_cache) == (4, 4)
    assert other.cache.folder != first.cache.folder


def test_a_model_records_its_engine_and_an_older_one_keeps_torch(tmp_path):
    record = extractor_record(ImageFeatureExtractor(cache_root=tmp_path, engine="torch"))
    assert record["engine"] == "torch"
    assert extractor_record(ImageFeatureExtractor(cache_root=tmp_path))["engine"] == "onnx"
    old = pinid.load(SCHEMA2)  # written before engines existed: no "engine" in its record
    assert old.extractor.engine == "torch"


def test_engine_torch_on_the_command_line(small_manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PINID_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["features", "--data", str(small_manifest), "--engine", "torch"]) == 0
    out = capsys.readouterr().out
    assert "18 computed" in out
    assert "-style1\n" in out and "onnx" not in out  # the cache line names the torch cache
    assert not (tmp_path / "cache" / "engines").exists()  # nothing exported for torch
    assert main(["features", "--data", str(small_manifest)]) == 0
    assert "18 computed" in capsys.readouterr().out  # onnx: its own cache


def test_a_damaged_or_unwritable_exported_graph_costs_a_re_export_not_the_run(renders, tmp_path):
    extractor = ImageFeatureExtractor(cache_root=tmp_path / "a", progress=False)
    reference = extractor.extract(renders[:2]).features
    graph = extractor._model.path
    graph.write_bytes(b"half a graph")  # a power cut before the data reached the disk
    shutil.rmtree(extractor.cache.folder)
    again = ImageFeatureExtractor(cache_root=tmp_path / "a", progress=False)
    fresh = ImageFeatureExtractor(cache_root=tmp_path / "b", progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "engines").write_text("a file where the folder should be")
    for run in (again, fresh):
        np.testing.assert_allclose(run.extract(renders[:2]).features, reference, atol=1e-6)
    assert graph.stat().st_size > 1_000_000  # exported and written again
