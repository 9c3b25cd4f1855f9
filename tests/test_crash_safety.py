"""Crash safety of models: killing ``pinid train`` while it replaces a model loses nothing.

(The same promise for the feature cache, a SIGKILLed ``pinid features`` whose rerun completes
with features identical to an uninterrupted run, is tested in test_features_cli.py.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from pinid.api import Model

pytestmark = pytest.mark.slow  # subprocesses, clusters, experiments or a browser


def _ranking(model, pin) -> list[tuple[str, float]]:
    answer = Model.load(model).identify(pin["text"], pin["path"])
    return [(c.user, c.probability) for c in answer.candidates]


@pytest.mark.parametrize("delay_s", [0.0, 0.02, 0.1])
def test_killing_train_while_it_replaces_a_model_leaves_a_working_model(
    sample_corpus, tmp_path, delay_s
):
    out = tmp_path / "model"
    command = [sys.executable, "-m", "pinid", "train", "--data", str(sample_corpus),
               "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    pin = json.loads(sample_corpus.read_text().splitlines()[0])
    pin["path"] = sample_corpus.parent / pin["image"]
    before = _ranking(out, pin)

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".model.*.tmp")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(delay_s)
    writing = bool(list(tmp_path.glob(".model.*.tmp")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    # Whatever instant the kill hit, the folder holds a whole model (old or new, the same here).
    assert _ranking(out, pin) == before
    if delay_s == 0.0:
        assert writing, "the kill must land while the new model is being written"
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    assert _ranking(out, pin) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left
