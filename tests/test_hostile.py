"""The hostile suite: every case of tests/hostile_corpus.py through the CLI and the service.

Each command runs in a subprocess under a time bound, an address-space limit and the guard of
tests/guard.py (no read under the ``outside`` folder the inputs point at, no network). A case
either is skipped with its reason named, or stops the command with one line naming the file.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pinid.api import Model
from pinid.data import load_dataset
from pinid.service.app import create_app
from tests import guard
from tests.hostile_corpus import (
    BIG_TEXT,
    IMAGE_CASES,
    INVALID_UTF8_TEXT,
    MANIFEST_CASES,
    SECRET,
    TEXT_CASES,
    image_bytes,
    write_bad_manifest,
    write_corpus,
)

TIME_BOUND_S = 300
"""Per command; a hang fails the test instead of the CI job."""
MEMORY_BOUND = 3 * 2**30
"""Address space per command: PyTorch and the model need ~2 GB; a decoded bomb would need 120."""
GUARD = Path(__file__).parent / "guard.py"
SKIPPED = {c.name for c in IMAGE_CASES if c.outcome == "skipped"}
USED = {c.name for c in IMAGE_CASES if c.outcome == "used"}

pytestmark = pytest.mark.slow  # subprocesses, clusters, experiments or a browser


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))


def run_pinid(*args: str, forbidden: Path) -> subprocess.CompletedProcess:
    """``pinid ARGS`` under the guard, the time bound and the memory bound."""
    proc = subprocess.run(  # past the time bound, TimeoutExpired fails the test
        [sys.executable, str(GUARD), str(forbidden), *args],
        capture_output=True,
        text=True,
        timeout=TIME_BOUND_S,
        preexec_fn=_limit_memory,
    )
    assert "GUARD" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="module")
def listener():
    """A TCP port that hostile SVGs point at; nothing may ever connect to it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        yield server
        with pytest.raises(BlockingIOError):
            server.accept()


@pytest.fixture(scope="module")
def corpus(sample_corpus, tmp_path_factory, listener) -> tuple[Path, Path]:
    """(manifest, outside folder) of the hostile corpus on top of the real sample clips."""
    root = tmp_path_factory.mktemp("hostile")
    base = [json.loads(line) for line in sample_corpus.read_text().splitlines()]
    manifest = write_corpus(root, base, sample_corpus.parent, listener.getsockname()[1])
    return manifest, root / "outside"


@pytest.fixture(scope="module")
def experiment(corpus, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    manifest, outside = corpus
    out = tmp_path_factory.mktemp("hostile-run")
    proc = run_pinid("experiment", "--data", str(manifest), "--out", str(out),
                     "--max-unreadable", "0.5", forbidden=outside)  # fmt: skip
    return out, proc


def test_features_skips_each_broken_image_and_names_why(corpus):
    manifest, outside = corpus
    proc = run_pinid("features", "--data", str(manifest), "--max-unreadable", "0.5",
                     forbidden=outside)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    named = {line.split()[0]: line for line in proc.stdout.splitlines() if "unreadable:" in line}
    assert set(named) == {f"hostile-{name}" for name in SKIPPED}
    for case in IMAGE_CASES:
        if case.outcome == "skipped":
            assert case.file in named[f"hostile-{case.name}"]
            assert case.reason in named[f"hostile-{case.name}"]


def test_by_default_too_many_broken_images_stop_the_run_in_one_line(corpus):
    manifest, outside = corpus
    proc = run_pinid("features", "--data", str(manifest), forbidden=outside)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and f"{len(SKIPPED)} of " in proc.stderr


def test_experiment_records_every_skipped_pin_with_its_reason(experiment):
    out, proc = experiment
    assert proc.returncode == 0, proc.stderr
    dataset = json.loads((out / "results.json").read_text())["dataset"]
    assert set(dataset["unreadable"]) == {f"hostile-{name}" for name in SKIPPED}
    for case in IMAGE_CASES:
        if case.outcome == "skipped":
            assert case.reason in dataset["unreadable"][f"hostile-{case.name}"]
    assert "left out, image unreadable" in proc.stderr
    model = json.loads((out / "model" / "model.json").read_text())
    texts = dict(zip(model["training_pins"]["pin_id"], model["training_pins"]["text"], strict=True))
    for name, text in TEXT_CASES.items():  # kept as given, NUL bytes and formulas included
        assert texts.get(f"text-{name}", text) == text


def test_predict_reports_each_unreadable_image_and_uses_the_rest(corpus, experiment, tmp_path):
    manifest, outside = corpus
    out, _ = experiment
    predictions = tmp_path / "predictions.jsonl"
    proc = run_pinid("predict", "--model", str(out / "model"), "--data", str(manifest),
                     "--out", str(predictions), forbidden=outside)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    answers = {a["pin_id"]: a for a in map(json.loads, predictions.read_text().splitlines())}
    for case in IMAGE_CASES:
        answer = answers[f"hostile-{case.name}"]
        if case.outcome == "skipped":
            assert case.reason in answer["image_error"] and answer["used"] == ["text"]
        else:
            assert answer["image_error"] is None and "image" in answer["used"]
    unknown = sum(a["user"] == "unknown" for a in answers.values())  # the model's threshold
    assert f"({len(SKIPPED)} with unreadable image, {unknown} answered unknown)" in proc.stdout


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
@pytest.mark.parametrize("command", ["features", "experiment", "predict"])
def test_a_bad_manifest_stops_every_command_in_one_line(case, command, tmp_path, experiment):
    manifest = write_bad_manifest(tmp_path, case, {"user": "u", "text": "apple"})
    arguments = {
        "features": ["features", "--data", str(manifest)],
        "experiment": ["experiment", "--data", str(manifest), "--out", str(tmp_path / "run")],
        "predict": [
            "predict",
            "--model",
            str(experiment[0] / "model"),
            "--data",
            str(manifest),
            "--out",
            str(tmp_path / "p.jsonl"),
        ],
    }[command]
    proc = run_pinid(*arguments, forbidden=tmp_path / "outside")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert str(manifest) in proc.stderr and MANIFEST_CASES[case][1] in proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "p.jsonl").exists()


@pytest.fixture(scope="module")
def service(experiment):
    with TestClient(create_app(Model.load(experiment[0] / "model"))) as client:
        yield client


@pytest.mark.parametrize("case", IMAGE_CASES, ids=[c.name for c in IMAGE_CASES])
def test_the_service_answers_each_image_case_quickly_and_as_documented(
    case, service, corpus, listener
):
    _, outside = corpus
    content = image_bytes(outside.resolve(), listener.getsockname()[1])[case.file]
    guard.watch(outside)
    started = time.monotonic()
    try:
        response = service.post(
            "/api/identify",
            data={"text": "hostile case"},  # words of the model's dictionary
            files={"image": (case.file, content, "application/octet-stream")},
        )
    finally:
        caught = guard.stop()
    assert time.monotonic() - started < 30
    assert not caught
    assert response.status_code == case.status, response.text
    if case.outcome == "skipped":
        assert case.reason in response.json()["detail"]
    else:
        assert response.json()["used"] == ["text", "image"]
    assert SECRET not in response.text


@pytest.mark.parametrize("name", sorted(TEXT_CASES))
def test_the_service_takes_hostile_texts_without_failing(name, service):
    response = service.post("/api/identify", data={"text": TEXT_CASES[name]})
    if TEXT_CASES[name] is BIG_TEXT:
        assert response.status_code in (400, 413, 422)
        assert "detail" in response.json()
    else:
        assert response.status_code in (200, 422), response.text  # 422: no known word


def test_csv_cells_that_look_like_formulas_are_plain_text(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    rows = "pin_id,user,text,image\n" + "".join(
        f'p{i},"=cmd|\' /C calc\'!A0","=HYPERLINK(""http://x.invalid"")",a.png\n' for i in range(3)
    )
    (tmp_path / "m.csv").write_text(rows, encoding="utf-8")
    dataset = load_dataset(tmp_path / "m.csv")
    assert dataset.pins[0].user == "=cmd|' /C calc'!A0"
    assert dataset.pins[0].text == '=HYPERLINK("http://x.invalid")'


def test_invalid_utf8_text_in_a_folder_tree_is_replaced_with_a_warning(tmp_path):
    pin = tmp_path / "alice" / "board" / "p1"
    pin.parent.mkdir(parents=True)
    pin.with_suffix(".txt").write_bytes(INVALID_UTF8_TEXT)
    (pin.parent / "p1.png").write_bytes(b"")
    with pytest.warns(UserWarning, match=str(pin.with_suffix(".txt"))):
        dataset = load_dataset(tmp_path)
    assert dataset.pins[0].text.startswith("caf\ufffd cr\ufffdme")


def test_the_guard_itself_catches_reads_and_connections(small_manifest):
    """The suite's promises rest on the guard: it must see a forbidden read and a connection."""
    proc = subprocess.run(
        [sys.executable, str(GUARD), str(small_manifest.parent), "data", "check", "--data",
         str(small_manifest)],
        capture_output=True, text=True, timeout=TIME_BOUND_S,
    )  # fmt: skip
    assert f"GUARD: read of {small_manifest.resolve()}" in proc.stderr
    guard.watch(small_manifest.parent)
    try:
        with socket.socket() as client, pytest.raises(PermissionError):
            client.connect(("127.0.0.1", 9))
    finally:
        caught = guard.stop()
    assert caught == ["network connection to ('127.0.0.1', 9)"]
