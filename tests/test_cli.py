"""The commands end to end on the committed openclipart sample: experiment, train, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pinid.cli import main
from pinid.data import Split, load_dataset, load_split, make_split, save_split
from pinid.evaluation.experiment import TABLE_ROWS
from tests.helpers import uncertain_text

MODEL_ROWS = (*TABLE_ROWS, "cf_ref_text", "cf_ref_image", "text_char", "cf_char", "cf_rerank")


@pytest.fixture(scope="module")
def run_dir(sample_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main(["experiment", "--data", str(sample_corpus), "--out", str(out)]) == 0
    return out


def test_experiment_writes_results_with_every_model_and_key(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    assert results["dataset"] | {"unreadable": {}} == results["dataset"]
    d = results["dataset"]
    assert (d["n_users"], d["n_pins"], d["n_train"], d["n_val"], d["n_test"]) == (4, 20, 12, 4, 4)
    assert set(results["models"]) == set(MODEL_ROWS)
    for metrics in results["models"].values():
        assert set(metrics) == {"accuracy", "macro_f1", "recall_at_10"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
        assert metrics["recall_at_10"] == 1.0  # four users: all are in the top 10
    assert set(results["per_user_f1"]) == set(MODEL_ROWS)
    assert len(results["per_user_f1"]["cf_ref"]) == 4
    assert set(results["chosen_C"]) == {"text", "char", "image"}
    assert results["final_model"] == "cf_rerank"
    cascade = results["cascade"]  # each weighting compared on the validation pins
    assert set(cascade["chosen_weights"]) == {"text", "char", "image"}
    assert cascade["chosen_weights"] in [c["weights"] for c in cascade["validation"]]
    assert all(0 <= c["accuracy"] <= c["recall_at_k"] <= 1 for c in cascade["validation"])
    calibration = results["calibration"]
    assert calibration["temperature"] > 0
    assert all(0 <= calibration[k] <= 1 for k in ("ece_cf_ref", "ece_before", "ece_after"))
    assert all(c in (0.1, 1.0, 10.0, 100.0) for c in results["chosen_C"].values())
    assert {"features", "tune_C", "refit", "evaluate", "linking"} <= set(results["timings_s"])
    assert (run_dir / "model" / "model.json").is_file()
    linking = results["linking"]  # five pins a user: no user has the 8 training pins to split
    assert linking["random_skipped"] == linking["board_skipped"] != ""
    pairs = linking["pairs"]
    assert len(pairs) == 6  # every pair of four users is among some user's nearest
    assert [p["score"] for p in pairs] == sorted((p["score"] for p in pairs), reverse=True)


@pytest.mark.slow
def test_experiment_prints_table_2(sample_corpus, tmp_path, capsys):
    assert main(["experiment", "--data", str(sample_corpus), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy  macro-F1  recall@10" in out
    assert "account linking, split accounts: random halves left out (no user with 8+" in out
    for row in TABLE_ROWS:
        assert f"\n{row} " in out


@pytest.mark.slow
def test_rerun_keeps_a_saved_split_even_if_a_new_one_would_differ(run_dir, sample_corpus, tmp_path):
    dataset = load_dataset(sample_corpus)
    planted = make_split(dataset, seed=7)  # a valid split that seed 0 would not make
    assert planted.assignment != make_split(dataset, seed=0).assignment
    save_split(Split(planted.assignment, seed=0), tmp_path / "split.json")
    assert main(["experiment", "--data", str(sample_corpus), "--out", str(tmp_path)]) == 0
    assert load_split(tmp_path / "split.json").assignment == planted.assignment


@pytest.mark.slow
def test_experiment_uses_a_split_file_from_data_split(sample_corpus, tmp_path, capsys):
    split_file = tmp_path / "mine.json"
    assert main(["data", "split", "--data", str(sample_corpus), "--out", str(split_file),
                 "--seed", "3"]) == 0  # fmt: skip
    run = tmp_path / "run"
    args = ["experiment", "--data", str(sample_corpus), "--out", str(run)]
    assert main([*args, "--split", str(split_file)]) == 0
    assert load_split(run / "split.json").assignment == load_split(split_file).assignment
    partial = Split(dict(list(load_split(split_file).assignment.items())[:5]), 3)
    save_split(partial, tmp_path / "partial.json")
    capsys.readouterr()
    assert main([*args, "--split", str(tmp_path / "partial.json")]) == 2
    assert "split does not cover 15 pin(s)" in capsys.readouterr().err


def _predict_json(capsys, *args) -> dict:
    assert main(["predict", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_a_training_pin_names_its_user_with_itself_as_evidence(run_dir, capsys):
    doc = json.loads((run_dir / "model" / "model.json").read_text())["training_pins"]
    pin = 0
    answer = _predict_json(
        capsys, "--model", str(run_dir / "model"), "--image", doc["image"][pin], "--text",
        doc["text"][pin],
    )  # fmt: skip
    assert answer["used"] == ["text", "image"]
    best = answer["candidates"][0]
    assert best["user"] == doc["user"][pin]
    assert best["evidence"]["pin_id"] == doc["pin_id"][pin]
    assert best["evidence"]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert set(best) == {"user", "probability", "text_prob", "image_prob", "evidence"}
    assert set(best["evidence"]) == {"pin_id", "text", "image", "image_url", "similarity"}
    assert best["evidence"]["image"] == doc["image"][pin] and best["evidence"]["image_url"] is None
    assert answer["user"] == best["user"] and answer["probability"] == best["probability"]
    scores = [entry["probability"] for entry in answer["candidates"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4


def test_predict_with_one_modality_says_which(run_dir, capsys):
    model = str(run_dir / "model")
    text_only = _predict_json(capsys, "--model", model, "--text", "telephone lutte incendie")
    assert text_only["used"] == ["text"]
    assert text_only["candidates"][0]["user"] == "yves GUILLOU"
    assert text_only["candidates"][0]["image_prob"] is None
    image = json.loads((run_dir / "model" / "model.json").read_text())["training_pins"]["image"][1]
    image_only = _predict_json(capsys, "--model", model, "--image", image, "--top", "2")
    assert image_only["used"] == ["image"] and len(image_only["candidates"]) == 2
    assert image_only["candidates"][0]["text_prob"] is None
    # compared in image space: a training image finds itself with similarity 1, not 1/sqrt(2)
    assert image_only["candidates"][0]["evidence"]["similarity"] == pytest.approx(1.0, abs=1e-5)


UNKNOWN_TEXT = "※※※ ¶¶¶"  # neither a word nor a character n-gram of any training pin


def test_text_without_anything_known_is_not_used(run_dir, capsys):
    model = str(run_dir / "model")
    assert main(["predict", "--model", model, "--text", UNKNOWN_TEXT]) == 2
    assert "the text has nothing the model knows" in capsys.readouterr().err
    image = json.loads((run_dir / "model" / "model.json").read_text())["training_pins"]["image"][1]
    answer = _predict_json(capsys, "--model", model, "--image", image, "--text", UNKNOWN_TEXT)
    assert answer["used"] == ["image"] and "nothing the model knows" in answer["text_note"]


def test_batch_predict_writes_one_line_per_pin(run_dir, sample_corpus, tmp_path):
    out = tmp_path / "pred.jsonl"
    args = ["predict", "--model", str(run_dir / "model"), "--data", str(sample_corpus)]
    assert main([*args, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    dataset = load_dataset(sample_corpus)
    assert [line["pin_id"] for line in lines] == [p.pin_id for p in dataset.pins]
    pairs = zip(lines, dataset.pins, strict=True)
    correct = np.mean([line["candidates"][0]["user"] == pin.user for line, pin in pairs])
    assert correct >= 0.8  # most of these pins were trained on


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --image, --text or both"),
        (["--image", "missing.png"], "missing.png: image file not found"),
        (["--data", "x.jsonl"], "needs both --data and --out"),
        (["--image", "missing.png", "--text", "x"], "missing.png: image file not found"),
    ],
)
def test_predict_input_errors_are_one_line(run_dir, capsys, args, message):
    assert main(["predict", "--model", str(run_dir / "model"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_predict_unreadable_image_is_one_line(run_dir, tmp_path, capsys):
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    assert main(["predict", "--model", str(run_dir / "model"), "--image", str(fake)]) == 2
    err = capsys.readouterr().err
    assert f"{fake}: unreadable: not an image" in err and err.count("\n") == 1


def test_tampered_model_is_refused(run_dir, tmp_path, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(run_dir / "model", model)
    data = bytearray((model / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model / "arrays.npz").write_bytes(bytes(data))
    assert main(["predict", "--model", str(model), "--text", "monkey"]) == 2
    assert "does not match its recorded sha256" in capsys.readouterr().err


def test_missing_model_folder_is_one_line(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "none"), "--text", "x"]) == 2
    assert "not a pinid model folder" in capsys.readouterr().err


@pytest.mark.slow
def test_train_fits_on_every_pin(sample_corpus, tmp_path, capsys):
    assert main(["train", "--data", str(sample_corpus), "--out", str(tmp_path / "m")]) == 0
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert len(doc["training_pins"]["pin_id"]) == 20 and len(doc["classes"]) == 4
    assert "model of 4 users from 20 pins" in capsys.readouterr().out


def test_predict_top_is_between_1_and_10(run_dir, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--model", str(run_dir / "model"), "--text", "x", "--top", "11"])
    assert "1..10" in capsys.readouterr().err


@pytest.mark.slow
def test_experiment_results_always_have_the_contract_rows(sample_corpus, tmp_path):
    args = ["experiment", "--data", str(sample_corpus), "--out", str(tmp_path)]
    assert main([*args, "--similarity", "text"]) == 0
    models = json.loads((tmp_path / "results.json").read_text())["models"]
    assert {"cf_ref", "cf_ref_text", "cf_ref_image", "cf_ref_joint"} <= set(models)
    assert models["cf_ref"] == models["cf_ref_text"]


def test_a_folder_without_any_text_is_a_one_line_error(tmp_path, capsys):
    from tests.conftest import write_image

    for u in range(3):
        for i in range(6):
            write_image(tmp_path / "data" / f"user{u}" / "board" / f"{i}.png", 10 * u + i)
    args = ["experiment", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no word occurs in two or more training pins" in err and err.count("\n") == 1


def test_experiment_never_writes_into_a_folder_of_the_users(sample_corpus, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert main(["experiment", "--data", str(sample_corpus), "--out", str(mine)]) == 2
    assert "is not a folder pinid wrote" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_failed_experiment_leaves_no_split_behind(tmp_path, capsys):
    from tests.conftest import write_image, write_manifest

    rows = []
    for u in range(2):
        for i in range(4):
            name = f"{u}_{i}.png"
            if i == 0:
                (tmp_path / name).write_text("not an image")
            else:
                write_image(tmp_path / name, 10 * u + i)
            rows.append({"pin_id": name, "user": f"u{u}", "text": "x y", "image": name})
    out = tmp_path / "run"
    assert (
        main(["experiment", "--data", str(write_manifest(tmp_path, rows)), "--out", str(out)]) == 2
    )
    assert "images unreadable" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_predict_answers_unknown_below_the_rejection_threshold(run_dir, sample_corpus, capsys):
    model = str(run_dir / "model")
    pins = [json.loads(line) for line in sample_corpus.read_text().splitlines()]

    def top_score(text: str) -> float:
        return _predict_json(capsys, "--model", model, "--text", text)["probability"]

    args = ["--model", model, "--text", uncertain_text(pins, top_score)]
    known = _predict_json(capsys, *args, "--reject-below", "0")
    assert known["user"] == known["candidates"][0]["user"] and known["reject_below"] == 0.0
    above = str((known["candidates"][0]["probability"] + 1) / 2)
    assert float(above) > known["candidates"][0]["probability"]
    unknown = _predict_json(capsys, *args, "--reject-below", above)
    assert unknown["user"] == "unknown" and unknown["candidates"] == known["candidates"]
    assert main(["predict", *args, "--reject-below", above]) == 0
    assert capsys.readouterr().out.startswith("answer: unknown (top probability")


def test_predict_refuses_a_threshold_out_of_range(run_dir, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--model", str(run_dir / "model"), "--text", "a", "--reject-below", "2"])
    assert "expected a number from 0 to 1, auto or none" in capsys.readouterr().err


def test_predict_applies_the_models_own_threshold_unless_told_none(run_dir, capsys):
    model = run_dir / "model"
    threshold = json.loads((model / "model.json").read_text())["meta"]["reject_below"]
    assert 0.0 < threshold <= 1.0  # chosen on held-out users, even among four
    args = ["--model", str(model), "--text", "a"]
    by_default = _predict_json(capsys, *args)
    assert by_default["reject_below"] == threshold
    assert by_default["user"] == (
        "unknown" if by_default["probability"] < threshold else by_default["candidates"][0]["user"]
    )
    never = _predict_json(capsys, *args, "--reject-below", "none")
    assert never["reject_below"] is None and never["user"] == never["candidates"][0]["user"]


def test_pooled_only_trains_on_the_papers_image_features(sample_corpus, tmp_path, capsys):
    out = tmp_path / "pooled"
    assert main(["train", "--data", str(sample_corpus), "--out", str(out), "--pooled-only"]) == 0
    capsys.readouterr()
    doc = json.loads((out / "model.json").read_text())
    assert doc["n_image_features"] == 1280 and doc["extractor"]["style"] is False
    assert "-style" not in doc["extractor"]["id"]
    pin = json.loads(sample_corpus.read_text().splitlines()[0])
    image = str(sample_corpus.parent / pin["image"])
    answer = _predict_json(capsys, "--model", str(out), "--image", image, "--reject-below", "none")
    assert answer["used"] == ["image"] and answer["user"] == pin["user"]


def test_batch_predict_never_overwrites_a_file_it_did_not_write(run_dir, sample_corpus, tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("precious\n")
    args = ["predict", "--model", str(run_dir / "model"), "--data", str(sample_corpus)]
    assert main([*args, "--out", str(precious)]) == 2
    assert precious.read_text() == "precious\n"
    out = tmp_path / "pred.jsonl"
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--out", str(out)]) == 0  # its own earlier output: replaced


def test_predict_takes_phone_photos_as_their_png_twin(run_dir, tmp_path, capsys):
    """A 48 MP JPEG (decoded at reduced scale), a HEIC and an AVIF of a training pin's image
    get the answer its PNG gets."""
    from PIL import Image

    doc = json.loads((run_dir / "model" / "model.json").read_text())["training_pins"]
    model = str(run_dir / "model")
    png = Image.open(doc["image"][0]).convert("RGB")
    photo = Image.new("RGB", (8064, 6048), "white")  # a phone's 4:3 frame around the clip
    photo.paste(png.resize((6048, 6048)), (1008, 0))
    twins = {"photo.jpg": photo, "photo.heic": png, "photo.avif": png}
    expected = _predict_json(capsys, "--model", model, "--image", doc["image"][0])
    for name, image in twins.items():
        image.save(tmp_path / name, quality=90)
        answer = _predict_json(capsys, "--model", model, "--image", str(tmp_path / name))
        assert answer["used"] == ["image"], name
        assert answer["candidates"][0]["user"] == expected["candidates"][0]["user"], name
