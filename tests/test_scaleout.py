"""Scale-out on Dask: a real scheduler and two worker processes on 127.0.0.1, started as
`dask scheduler` and `dask worker` are, give the in-process run's features and rankings; a worker
killed mid-shard loses nothing; no image is computed twice."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin

from pinid.cli import main
from pinid.errors import PinidError
from pinid.features import distributed
from pinid.features.cache import FeatureCache
from pinid.features.extract import ImageFeatureExtractor
from tests.conftest import write_image, write_manifest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # subprocesses, clusters, experiments or a browser


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A client of the scheduler; each worker runs under a nanny that restarts it if it dies.
    The workers' own PINID_CACHE_DIR is a decoy: they must write where the client says."""
    folder = tmp_path_factory.mktemp("cluster")
    scheduler_file = folder / "scheduler.json"
    env = {
        **os.environ,
        "PINID_CACHE_DIR": str(folder / "decoy"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    local = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
    commands = [
        ["distributed.cli.dask_scheduler", "--port", "0", "--scheduler-file", scheduler_file],
        *[
            ["distributed.cli.dask_worker", "--scheduler-file", scheduler_file, "--nthreads", "1"]
            for _ in range(2)
        ],
    ]
    processes = []
    try:
        for i, command in enumerate(commands):
            with open(folder / f"{i}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", *map(str, command), *local],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        with Client(scheduler_file=str(scheduler_file), timeout=120) as client:
            client.wait_for_workers(2, timeout=120)
            yield client
        assert not (folder / "decoy").exists()
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class CacheWriteLog(WorkerPlugin):
    """On each worker, one line ``pid sha256`` per cache entry written, into one file for the
    whole cluster (workers are other processes: an in-memory counter would not reach the test);
    ``pause`` after each write gives a test time to kill a worker mid-shard."""

    name = "pinid-test-write-log"

    def __init__(self, log: Path, pause: float = 0.0) -> None:
        self.log, self.pause = str(log), pause

    def setup(self, worker) -> None:
        self.original = original = FeatureCache.put

        def put(cache, sha256, vector):
            original(cache, sha256, vector)
            with open(self.log, "a") as fh:  # one short append: whole lines from any process
                fh.write(f"{os.getpid()} {sha256}\n")
            time.sleep(self.pause)

        FeatureCache.put = put

    def teardown(self, worker) -> None:
        FeatureCache.put = self.original


class CacheElsewhere(WorkerPlugin):
    """Workers whose cache folder has the client's name but is not the client's folder."""

    name = "pinid-test-cache-elsewhere"

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def setup(self, worker) -> None:
        self.original = original = FeatureCache.__init__
        root = self.root

        def init(cache, _root, extractor_id, dim):
            original(cache, Path(root), extractor_id, dim)

        FeatureCache.__init__ = init

    def teardown(self, worker) -> None:
        FeatureCache.__init__ = self.original


@contextlib.contextmanager
def plugin(client: Client, worker_plugin: WorkerPlugin):
    client.register_plugin(worker_plugin)
    try:
        yield
    finally:
        client.unregister_worker_plugin(worker_plugin.name)


def _written(log: Path) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [
        (int(pid), sha)
        for pid, sha in (line.split() for line in log.read_text().split("\n") if line)
    ]


def _distinct_images(folder: Path, n: int) -> list[Path]:
    return [write_image(folder / f"{i}.png", 5000 + i, size=(96, 80)) for i in range(n)]


@pytest.fixture(scope="module")
def model_dir(sample_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scaleout") / "model"
    assert main(["train", "--data", str(sample_corpus), "--out", str(out)]) == 0
    return out


def test_predict_on_the_cluster_gives_the_in_process_rankings_and_features(
    cluster, model_dir, sample_corpus, tmp_path, monkeypatch
):
    args = ["predict", "--model", str(model_dir), "--data", str(sample_corpus)]
    monkeypatch.setenv("PINID_CACHE_DIR", str(tmp_path / "in-process"))
    assert main([*args, "--out", str(tmp_path / "in-process.jsonl")]) == 0
    monkeypatch.setenv("PINID_CACHE_DIR", str(tmp_path / "cluster"))
    scheduler = ["--scheduler", cluster.scheduler.address, "--shard-size", "4"]
    assert main([*args, "--out", str(tmp_path / "cluster.jsonl"), *scheduler]) == 0

    in_process = (tmp_path / "in-process.jsonl").read_text()
    assert (tmp_path / "cluster.jsonl").read_text() == in_process
    assert len(in_process.splitlines()) == 20
    entries = sorted(
        p.relative_to(tmp_path / "in-process") for p in tmp_path.glob("in-process/**/*.npy")
    )
    assert len(entries) == 20
    for entry in entries:  # bitwise: the workers ran the in-process batches in the same regime
        expected = np.load(tmp_path / "in-process" / entry)
        assert np.array_equal(np.load(tmp_path / "cluster" / entry), expected)


def test_no_image_is_computed_twice(cluster, tmp_path, monkeypatch, capsys):
    images = _distinct_images(tmp_path / "img", 16)
    rows = [
        {"pin_id": f"p{i}", "user": "u", "text": "", "image": f"img/{i}.png"} for i in range(16)
    ]
    for i in (0, 5, 10, 15):  # the same bytes under another name, likely in another shard
        shutil.copy(images[i], tmp_path / "img" / f"copy{i}.png")
        rows.append({"pin_id": f"c{i}", "user": "u", "text": "", "image": f"img/copy{i}.png"})
    (tmp_path / "img" / "bad.png").write_text("text, not a PNG")
    rows.append({"pin_id": "bad", "user": "u", "text": "", "image": "img/bad.png"})
    manifest = write_manifest(tmp_path, rows)
    features = ["features", "--data", str(manifest), "--max-unreadable", "0.1"]

    def summary(cache: Path, *options: str) -> list[str]:
        ImageFeatureExtractor(cache_root=cache, progress=False).extract(images[12:])
        monkeypatch.setenv("PINID_CACHE_DIR", str(cache))
        assert main([*features, *options]) == 0
        return capsys.readouterr().out.splitlines()[:-1]  # the last line names the cache

    log = tmp_path / "writes.log"
    with plugin(cluster, CacheWriteLog(log)):
        on_cluster = ["--scheduler", cluster.scheduler.address, "--shard-size", "4"]
        lines = summary(tmp_path / "cluster", *on_cluster)
        assert lines == summary(tmp_path / "in-process")
        assert (
            "21 pins, 12 computed, 5 from cache, 3 same image as another pin, 1 unreadable"
            in (lines[0])
        )
        written = [sha for _, sha in _written(log)]
        assert len(written) == len(set(written)) == 12  # the 12 distinct images not yet cached
        assert main([*features, *on_cluster]) == 0  # again: every image is in the cache now
        assert "0 computed, 20 from cache" in capsys.readouterr().out
        assert len(_written(log)) == 12


def test_a_worker_killed_mid_shard_loses_nothing(cluster, tmp_path):
    paths = _distinct_images(tmp_path / "img", 48)
    extractor = ImageFeatureExtractor(cache_root=tmp_path / "cache", progress=False)
    log, outcome = tmp_path / "writes.log", {}

    def run() -> None:
        try:
            outcome["run"] = distributed.extract_on_cluster(cluster, extractor, paths, shard_size=8)
        except BaseException as exc:
            outcome["error"] = exc

    with plugin(cluster, CacheWriteLog(log, pause=0.05)):
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 120
        while not _written(log) and time.monotonic() < deadline:
            time.sleep(0.01)
        victim = _written(log)[0][0]  # a worker that has written part of its first shard
        os.kill(victim, signal.SIGKILL)
        thread.join(300)
    assert not thread.is_alive() and "error" not in outcome
    run = outcome["run"]
    by_victim = [sha for pid, sha in _written(log) if pid == victim]
    assert len(by_victim) % 8 != 0, "the kill must land mid-shard"
    assert run.unreadable == {} and run.computed + run.from_cache == 48
    assert run.from_cache >= len(by_victim)  # its shard, rerun elsewhere, kept what it wrote

    resumed = ImageFeatureExtractor(cache_root=tmp_path / "cache", progress=False).extract(paths)
    assert resumed.from_cache == 48 and resumed.readable.all()
    fresh = ImageFeatureExtractor(cache_root=tmp_path / "fresh", progress=False).extract(paths)
    # The rerun shard batches its remaining images differently; a batch of one image computes
    # other last digits (measured up to 1e-6), so this compare has a tolerance.
    np.testing.assert_allclose(resumed.features, fresh.features, rtol=0, atol=1e-5)


def test_workers_that_do_not_share_the_cache_folder_are_an_error(cluster, tmp_path):
    paths = _distinct_images(tmp_path / "img", 4)
    extractor = ImageFeatureExtractor(cache_root=tmp_path / "cache", progress=False)
    with (
        plugin(cluster, CacheElsewhere(tmp_path / "elsewhere")),
        pytest.raises(PinidError, match="4 image features that this machine does not see"),
    ):
        distributed.extract_on_cluster(cluster, extractor, paths)


def test_a_worker_with_another_image_extractor_refuses_its_shard():
    recipe = distributed._Recipe(
        "efficientnet-lite0", "pad", 4, "/nowhere", "lite0-of-another-pinid", True, "onnx"
    )
    with pytest.raises(PinidError, match=r"has image extractor .* the client lite0-of-another"):
        distributed._extractor(recipe, 1)


def test_local_workers_start_and_close_a_cluster_on_this_machine(
    small_manifest, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("PINID_CACHE_DIR", str(tmp_path / "cache"))
    args = ["features", "--data", str(small_manifest), "--local-workers", "2", "--shard-size", "4"]
    assert main(args) == 0
    assert "18 pins, 18 computed, 0 from cache" in capsys.readouterr().out
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 18


def test_an_unreachable_scheduler_is_a_one_line_error(small_manifest, capsys, monkeypatch):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    start = time.monotonic()
    assert main(["features", "--data", str(small_manifest), "--scheduler", address]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert err.startswith(f"pinid: error: cannot reach the Dask scheduler at {address}")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--scheduler", "localhost"],
            "cannot reach the Dask scheduler at localhost: missing port",
        ),
        (["--image", "x.png", "--scheduler", "tcp://127.0.0.1:8786"], "serve batches"),
    ],
)
def test_cluster_option_errors_are_one_line(
    model_dir, sample_corpus, tmp_path, capsys, args, message
):
    data = ["--data", str(sample_corpus), "--out", str(tmp_path / "p.jsonl")]
    full = ["predict", "--model", str(model_dir), *(args if "--image" in args else [*data, *args])]
    assert main(full) == 2
    assert message in capsys.readouterr().err


def test_scheduler_and_local_workers_exclude_each_other(small_manifest, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "features",
                "--data",
                str(small_manifest),
                "--scheduler",
                "tcp://h:1",
                "--local-workers",
                "2",
            ]
        )
    assert exit_info.value.code == 2
    assert "not allowed with argument --scheduler" in capsys.readouterr().err
