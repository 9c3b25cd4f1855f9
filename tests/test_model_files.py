"""Model folders: identical predictions after a round trip, and refusal of anything odd."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import pinid
from pinid.cli import main
from pinid.data import load_dataset
from pinid.errors import ModelFileError, PinidError
from pinid.features.dataset import prepare
from pinid.features.extract import ImageFeatureExtractor
from pinid.models.io import load_model, save_model
from pinid.models.training import extractor_record, fit_identifier


@pytest.fixture(scope="module")
def fitted(sample_corpus, tmp_path_factory):
    extractor = ImageFeatureExtractor(progress=False)
    data = prepare(load_dataset(sample_corpus), extractor)
    ids = {p.pin_id for p in data.dataset.pins}
    model, pins = fit_identifier(data, ids, {"text": 10.0, "char": 10.0, "image": 10.0})
    folder = tmp_path_factory.mktemp("models") / "model"
    save_model(folder, model, pins, extractor_record(extractor))
    return model, data, folder


def test_round_trip_gives_identical_probabilities_and_rankings(fitted):
    model, data, folder = fitted
    loaded = load_model(folder).model
    X = data.features
    np.testing.assert_array_equal(
        loaded.views_.base.predict_proba(X), model.views_.base.predict_proba(X)
    )
    for name, view in model.views_.probabilities(X).items():
        np.testing.assert_array_equal(loaded.views_.probabilities(X)[name], view)
    a, b = model.rank(X), loaded.rank(X)
    for field in ("users", "probability", "evidence", "similarity"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert loaded.get_params() == model.get_params()
    assert loaded.temperature_ == model.temperature_


def test_the_cascade_weights_travel_with_the_model_and_choose_its_candidates(fitted, tmp_path):
    from pinid.models.fusion import cascade
    from pinid.models.ranking import top_k

    _, data, folder = fitted
    folder = _copy(folder, tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    assert doc["params"]["cascade_weights"] == [1.0, 1.0, 1.0]
    doc["params"]["cascade_weights"] = [1.0, 0.0, 1.0]
    (folder / "model.json").write_text(json.dumps(doc))
    loaded = load_model(folder).model
    assert loaded.cascade_weights == (1.0, 0.0, 1.0) == loaded.views_.weights
    X = data.features
    views, fused, candidates = loaded.views_.shortlist(X, loaded.views_.encode(X))
    np.testing.assert_array_equal(fused, cascade(views["text"], views["image"]))
    np.testing.assert_array_equal(candidates, top_k(fused, loaded.top_k))
    assert not np.allclose(fused, cascade(*views.values()))  # the characters' left out
    doc["params"]["cascade_weights"] = [1, 0, 1]  # integers are numbers too
    (folder / "model.json").write_text(json.dumps(doc))
    assert load_model(folder).model.views_.weights == (1.0, 0.0, 1.0)


def test_a_reranker_part_before_version_3_takes_the_character_similarities(fitted, tmp_path):
    """The default model's search leaves the character space out; a re-ranker saved in part
    version 1 or 2 took its similarities and still gets them, answering as it was saved;
    version 1 also re-ranks the plain product's candidates."""
    from sklearn.base import clone

    from pinid.models.io import TrainingPins

    model, data, saved = fitted
    X, y = data.features, data.labels()
    assert not model.char_similarity and model.views_.search.spaces == ("text", "image")
    assert model.reranker_.coef_.shape == (17,)
    with_chars = clone(model).set_params(char_similarity=True).fit(X, y)
    assert with_chars.views_.search.spaces == ("text", "char", "image")
    folder = tmp_path / "with-chars"
    extractor = json.loads((saved / "model.json").read_text())["extractor"]
    save_model(folder, with_chars, TrainingPins.of(data.dataset.pins), extractor)
    doc = json.loads((folder / "model.json").read_text())
    assert doc["parts"]["reranker"] == 3 and doc["params"]["char_similarity"] is True
    expected = with_chars.rank(X)
    del doc["params"]["char_similarity"]  # as version 2 was written
    for version in (2, 1):
        doc["parts"]["reranker"] = version
        if version == 1:
            del doc["params"]["cascade_weights"]  # version 1 has none: the plain product
        (folder / "model.json").write_text(json.dumps(doc))
        loaded = load_model(folder).model
        assert loaded.char_similarity and loaded.views_.weights == (1.0, 1.0, 1.0)
        assert loaded.views_.search.spaces == ("text", "char", "image")
        got = loaded.rank(X)
        for field in ("users", "probability", "evidence", "similarity"):
            np.testing.assert_array_equal(getattr(got, field), getattr(expected, field))
    for version, params, error in ((2, {}, "KeyError: 'cascade_weights'"),
                                   (3, {"cascade_weights": [1, 1, 1]}, "KeyError: 'char_sim"),
                                   (3, {"cascade_weights": [1, 1, 1], "char_similarity": 1},
                                    "char_similarity must be true or false"),
                                   (3, {"cascade_weights": [1, 1, 1], "char_similarity": False},
                                    "re-ranker weights have the wrong shape")):  # fmt: skip
        doc["parts"]["reranker"] = version
        (folder / "model.json").write_text(
            json.dumps({**doc, "params": {**doc["params"], **params}})
        )
        with pytest.raises(ModelFileError, match=error):
            load_model(folder)


def test_model_json_records_versions_vocabulary_and_training_pins(fitted):
    _, data, folder = fitted
    doc = json.loads((folder / "model.json").read_text())
    assert doc["schema_version"] == 3
    assert doc["parts"] == {"words": 1, "chars": 1, "image": 2, "training_pins": 1, "reranker": 3}
    assert {"numpy", "scipy", "scikit-learn"} <= set(doc["library_versions"])
    assert doc["params"]["C_text"] == 10.0 and doc["vocabulary"]
    assert doc["extractor"]["name"] == "efficientnet-lite0" and doc["extractor"]["style"]
    assert doc["n_image_features"] == 1280 + 992  # pooled, then lite0's style statistics
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


def _store_arrays(folder: Path, data: bytes) -> None:
    """Replace arrays.npz and record its hash, as an attacker controlling both files would."""
    (folder / "arrays.npz").write_bytes(data)
    doc = json.loads((folder / "model.json").read_text())
    doc["arrays"]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "model.json").write_text(json.dumps(doc))


def _rewrite_arrays(folder: Path, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _store_arrays(folder, buffer.getvalue())


def _arrays(folder: Path) -> dict:
    with np.load(folder / "arrays.npz") as npz:
        return {name: npz[name] for name in npz.files}


class _SideEffect:
    def __reduce__(self):
        return (Path.touch, (Path(tempfile.gettempdir()) / "pinid-unpickled",))


def test_pickled_arrays_are_never_unpickled_even_with_a_matching_hash(fitted, tmp_path):
    folder = _copy(fitted[2], tmp_path)
    marker = Path(tempfile.gettempdir()) / "pinid-unpickled"
    marker.unlink(missing_ok=True)
    arrays = _arrays(folder)
    arrays["text_idf"] = np.array([_SideEffect()], dtype=object)
    _rewrite_arrays(folder, arrays)
    with pytest.raises(ModelFileError, match="text_idf: dtype object is not numeric"):
        load_model(folder)
    assert not marker.exists()


def test_out_of_range_sparse_indices_are_refused_not_a_crash(fitted, tmp_path):
    folder = _copy(fitted[2], tmp_path)
    arrays = _arrays(folder)
    arrays["train_text_indices"] = arrays["train_text_indices"] + 10**6
    _rewrite_arrays(folder, arrays)
    with pytest.raises(ModelFileError, match="inconsistent model files"):
        load_model(folder)


def test_a_header_claiming_a_huge_array_is_refused_before_allocating(fitted, tmp_path):
    folder = _copy(fitted[2], tmp_path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in _arrays(folder).items():
            member = io.BytesIO()
            if name == "train_y":  # 800 GB claimed, 8 bytes given
                header = {"descr": "<i8", "fortran_order": False, "shape": (10**11,)}
                np.lib.format.write_array_header_1_0(member, header)
                member.write(b"\0" * 8)
            else:
                np.lib.format.write_array(member, array)
            archive.writestr(f"{name}.npy", member.getvalue())
    _store_arrays(folder, buffer.getvalue())
    with pytest.raises(ModelFileError, match="train_y: header claims more data than the file"):
        load_model(folder)


def test_missing_keys_in_model_json_are_one_line_errors(fitted, tmp_path):
    folder = _copy(fitted[2], tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    del doc["extractor"]
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="inconsistent model files \\(KeyError"):
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


def test_saving_never_replaces_a_folder_pinid_did_not_write(fitted, tmp_path):
    model, _, folder = fitted
    pins = load_model(folder).pins
    victim = tmp_path / "Documents"
    victim.mkdir()
    (victim / "notes.txt").write_text("precious")
    with pytest.raises(PinidError, match="exists and is not a folder pinid wrote"):
        save_model(victim, model, pins, {"name": "x"})
    assert (victim / "notes.txt").read_text() == "precious"
    save_model(folder, model, pins, load_model(folder).extractor)  # an earlier model: replaced
    assert load_model(folder).pins.pin_ids == pins.pin_ids


@pytest.mark.parametrize("name", ["rerank_coef", "char_coef", "train_image", "rerank_mean"])
def test_non_finite_weights_are_refused_even_with_a_matching_hash(fitted, tmp_path, name):
    folder = _copy(fitted[2], tmp_path)
    arrays = _arrays(folder)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = np.nan if name != "rerank_mean" else np.inf
    _rewrite_arrays(folder, arrays)
    with pytest.raises(ModelFileError, match=f"{name}: holds NaN or infinite values"):
        load_model(folder)


@pytest.mark.parametrize(("key", "value"), [
    ("temperature", 1e-320), ("meta", []), ("params.top_k", True),
    ("params.cascade_weights", [0, 0, 0]), ("params.cascade_weights", [1, -1, 1]),
    ("params.cascade_weights", [1, float("nan"), 1]), ("params.cascade_weights", [1, "1", 1]),
    ("params.cascade_weights", [1, 1]), ("params.cascade_weights", {"text": 1}),
    ("params.cascade_weights", [1, 10**400, 1]), ("params.cascade_weights", [1, 1e308, 1]),
    ("params.cascade_weights", [True, 1, 1]), ("params.cascade_weights", [1, 1, 0]),
    ("params.cascade_weights", [0, 0, 1]), ("params.C_char", "abc"), ("params.C_char", True),
    ("params.C_text", None), ("params.C_text", 0), ("params.C_image", [1]),
    ("params.C_image", -1.0),
])  # fmt: skip
def test_implausible_settings_in_model_json_are_refused(fitted, tmp_path, key, value):
    folder = _copy(fitted[2], tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    where, _, field = key.rpartition(".")
    target = doc["params"] if where == "params" else doc
    target[field] = value
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="inconsistent model files"):
        load_model(folder)


PARTS_VALID = {"words": 1, "chars": 1, "image": 1, "training_pins": 1, "reranker": 1}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("parts", [1, 1, 1, 1, 1], "must give the version of each of"),
        ("parts", {**PARTS_VALID, "extra": 1}, "must give the version of each of"),
        ("parts", {k: v for k, v in PARTS_VALID.items() if k != "words"}, "must give the"),
        ("parts", {**PARTS_VALID, "words": True}, "words are of version True"),
        ("parts", {**PARTS_VALID, "image": 1.0}, "image are of version 1.0"),
        ("parts", {**PARTS_VALID, "chars": [1]}, "chars are of version \\[1\\]"),
        ("schema_version", True, "unknown model schema"),
        ("arrays", [], "must record the sha256"),
        ("arrays", {"sha256": 7}, "must record the sha256"),
        ("vocabulary", {"apple": 0, "pear": 0}, "word vocabulary indices must be 0..n-1"),
        ("n_image_features", 640, "image classifier weights have the wrong shape"),
        ("classes", ["a", "a", "b", "c"], "need two or more distinct classes"),
    ],
)
def test_a_malformed_model_json_is_one_line_error(fitted, tmp_path, key, value, message):
    folder = _copy(fitted[2], tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    doc[key] = value
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match=message):
        load_model(folder)


def test_auto_threshold_is_the_one_stored_in_training(fitted, tmp_path):
    from pinid.models.io import rejection_threshold

    where = str(fitted[2])
    assert rejection_threshold({"reject_below": 0.73}, where, "auto") == 0.73
    assert rejection_threshold({"suggested_reject_below": 0.6}, where, "auto") == 0.6  # 0.2's
    assert rejection_threshold({"reject_below": 0.73}, where, 0.2) == 0.2
    assert rejection_threshold({"reject_below": 0.73}, where, None) is None
    assert rejection_threshold({}, where, "auto") is None  # a model from before 0.3: none
    with pytest.raises(ModelFileError, match="rejection threshold is not a number"):
        rejection_threshold({"reject_below": "high"}, where, "auto")


SCHEMA2 = Path(__file__).parent / "fixtures" / "model-schema2"
SCHEMA2_ANSWERS = Path(__file__).parent / "fixtures" / "model-schema2-answers.json"


def _schema2_answers(folder: Path, sample_corpus: Path) -> list[tuple]:
    """The fixture's queries answered by the model in ``folder``, next to the answers the
    pinid that wrote it gave (its images are the sample corpus' renders)."""
    import pinid

    expected = json.loads(SCHEMA2_ANSWERS.read_text())
    images = [sample_corpus.parent / e["image"] if e["image"] else None for e in expected]
    answers = pinid.load(folder).identify_many([e["text"] for e in expected], images)
    return list(zip(expected, answers, strict=True))


def test_a_schema_2_model_folder_loads_and_answers_as_before(sample_corpus):
    for want, got in _schema2_answers(SCHEMA2, sample_corpus):
        assert got.user == want["answer"]
        assert [(c.user, c.evidence.pin_id) for c in got.candidates] == [
            (user, pin) for user, _, pin in want["ranking"]
        ]
        # pinid 0.5 computes the re-ranker's similarity statistics another way (one search,
        # the image space in its principal directions): the same ranking and evidence, the
        # probabilities within a millionth, or 1e-12 for the vanishing ones (1e-9 before)
        assert [c.probability for c in got.candidates] == pytest.approx(
            [p for _, p, _ in want["ranking"]], rel=1e-6, abs=1e-12
        )


def test_model_upgrade_rewrites_a_schema_2_folder_once_and_keeps_its_answers(
    sample_corpus, tmp_path, capsys
):
    folder = tmp_path / "old-model"
    shutil.copytree(SCHEMA2, folder)
    assert main(["model", "upgrade", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == f"{folder}: upgraded to model format 3"
    doc = json.loads((folder / "model.json").read_text())
    assert doc["schema_version"] == 3 and set(doc["parts"]) == {
        "words", "chars", "image", "training_pins", "reranker"}  # fmt: skip
    assert sorted(p.name for p in (folder / "thumbnails").iterdir()) == sorted(
        p.name for p in (SCHEMA2 / "thumbnails").iterdir()
    )
    assert (folder / "arrays.npz").read_bytes() == (SCHEMA2 / "arrays.npz").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old-model"]  # no temporary file
    assert doc["upgraded"] == {"from_schema": 2, "by_pinid": pinid.__version__}
    for want, got in _schema2_answers(folder, sample_corpus):
        assert [(c.user, c.evidence.pin_id) for c in got.candidates] == [
            (user, pin) for user, _, pin in want["ranking"]
        ]
        assert [c.probability for c in got.candidates] == pytest.approx(
            [p for _, p, _ in want["ranking"]], rel=1e-6, abs=1e-12
        )
    assert main(["model", "upgrade", str(folder)]) == 0
    assert "already in model format 3" in capsys.readouterr().out


def test_a_part_of_a_version_this_pinid_does_not_know_is_refused(fitted, tmp_path, capsys):
    folder = _copy(fitted[2], tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    doc["parts"]["reranker"] = 4
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="reranker are of version 4"):
        load_model(folder)
    assert main(["model", "upgrade", str(folder)]) == 2
    assert "reranker are of version 4" in capsys.readouterr().err
