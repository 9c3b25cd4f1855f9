"""Training on Dask: a real local cluster of two worker processes fits each view's Cs and the
cross-fitting folds; the model is the in-process one, and a worker killed mid-fit loses
nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distributed.diagnostics.plugin import WorkerPlugin

from pinid.api import Model
from pinid.cli import main
from pinid.data import load_dataset
from pinid.features.dataset import prepare
from pinid.features.distributed import connect
from pinid.features.extract import ImageFeatureExtractor
from pinid.models import final_model
from pinid.models.distributed import OnCluster
from pinid.models.final_model import FinalModel
from pinid.models.io import _arrays

pytestmark = pytest.mark.slow  # clusters and trainings


@pytest.fixture(scope="module")
def client():
    with connect(None, 2) as client:
        yield client


class FitLog(WorkerPlugin):
    """On each worker, one line ``pid`` per fold's views fitted, then ``pause``: a test sees
    which worker is mid-fit and has time to kill it."""

    name = "pinid-test-fit-log"

    def __init__(self, log: Path, pause: float) -> None:
        self.log, self.pause = str(log), pause

    def setup(self, worker) -> None:
        self.original = original = final_model.fit_models

        def fit_models(models, y):
            with open(self.log, "a") as fh:
                fh.write(f"{os.getpid()}\n")
            time.sleep(self.pause)
            return original(models, y)

        final_model.fit_models = fit_models

    def teardown(self, worker) -> None:
        final_model.fit_models = self.original


def test_train_on_local_workers_saves_the_in_process_model(sample_model, sample_corpus, tmp_path):
    out = tmp_path / "model"
    assert main(["train", "--data", str(sample_corpus), "--out", str(out),
                 "--local-workers", "2"]) == 0  # fmt: skip
    mine, theirs = Model.load(out), Model.load(sample_model)  # each built once: slow
    expected = _arrays(theirs.final)
    for name, array in _arrays(mine.final).items():
        np.testing.assert_allclose(array, expected[name], rtol=0, atol=1e-6, err_msg=name)
    assert mine.final.get_params() == theirs.final.get_params()  # the Cs chosen
    assert abs(mine.final.temperature_ - theirs.final.temperature_) < 1e-6
    pins = load_dataset(sample_corpus).pins
    texts, images = [p.text for p in pins], [p.image for p in pins]
    mine_answers, their_answers = (
        mine.identify_many(texts, images),
        theirs.identify_many(texts, images),
    )
    for a, b in zip(mine_answers, their_answers, strict=True):
        assert [c.user for c in a.candidates] == [c.user for c in b.candidates]
        for x, y in zip(a.candidates, b.candidates, strict=True):
            assert abs(x.probability - y.probability) < 1e-6


def test_a_worker_killed_mid_fit_is_retried(client, sample_corpus, tmp_path):
    data = prepare(load_dataset(sample_corpus), ImageFeatureExtractor(progress=False))
    X, y = data.part({p.pin_id for p in data.dataset.pins})
    log, outcome = tmp_path / "fits.log", {}

    def fit() -> None:
        try:
            outcome["model"] = FinalModel().fit(X, y, fits=OnCluster(client))
        except BaseException as exc:
            outcome["error"] = exc

    client.register_plugin(FitLog(log, pause=1.0))
    try:
        thread = threading.Thread(target=fit)
        thread.start()
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        victim = int(log.read_text().split()[0])  # a worker in the middle of a fold's fit
        os.kill(victim, signal.SIGKILL)
        thread.join(300)
    finally:
        client.unregister_worker_plugin(FitLog.name)
    assert not thread.is_alive() and "error" not in outcome
    pids = [int(pid) for pid in log.read_text().split()]
    assert pids.count(victim) == 1 and len(pids) > 5  # its fold was fitted again elsewhere
    expected = _arrays(FinalModel().fit(X, y))
    for name, array in _arrays(outcome["model"]).items():
        np.testing.assert_allclose(array, expected[name], rtol=0, atol=1e-6, err_msg=name)
