"""Full disks, read-only places and two runs at once: one line naming the path, nothing
complete lost, the rerun completes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pinid._atomic import lock_file
from pinid.api import Model
from pinid.data import load_dataset
from pinid.features.extract import ImageFeatureExtractor

pytestmark = pytest.mark.slow  # subprocesses, mounts

SCENARIOS = Path(__file__).parent / "disk_scenarios.py"


def _mounts_work() -> bool:
    """A mount namespace of its own with a tmpfs: root on Linux (as CI runs)."""
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _mounts_work(), reason="needs unshare -m and tmpfs mounts")


def _scenario(name: str, corpus: Path, tmp_path: Path) -> dict:
    disk, report = tmp_path / "disk", tmp_path / "report.json"
    disk.mkdir()
    command = ["unshare", "-m", sys.executable, str(SCENARIOS), name, str(disk), str(corpus)]
    done = subprocess.run([*command, str(report)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(report.read_text())


def _one_line(run: dict, *parts: str) -> None:
    assert run["rc"] == 2 and run["err"].count("\n") == 1, run["err"]
    assert all(part in run["err"] for part in parts), run["err"]


@needs_mounts
def test_a_model_written_to_a_full_disk_fails_in_one_line_and_keeps_the_old_one(
    sample_corpus, tmp_path
):
    report = _scenario("model_on_a_full_disk", sample_corpus, tmp_path)
    assert report["first"]["rc"] == 0
    _one_line(report["full"], str(tmp_path / "disk" / "model"), "No space left on device")
    assert report["intact"] and report["predict"]["rc"] == 0
    assert report["left"] == ["filler", "model"]  # no temporary folder left behind
    assert report["again"]["rc"] == 0, report["again"]["err"]


@needs_mounts
def test_the_feature_cache_on_a_full_disk_keeps_every_complete_entry(sample_corpus, tmp_path):
    report = _scenario("cache_on_a_full_disk", sample_corpus, tmp_path)
    _one_line(report["full"], str(tmp_path / "disk" / "cache"), "No space left on device")
    paths = [p.image for p in load_dataset(sample_corpus).pins]
    reference = ImageFeatureExtractor(cache_root=tmp_path / "reference", progress=False)
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]
    expected = dict(zip(digests, reference.extract(paths).features, strict=True))
    when_full, after = report["entries_when_full"], report["entries"]
    assert 0 < len(when_full) < len(expected)  # the disk filled up part of the way
    assert report["again"]["rc"] == 0 and len(after) == len(expected)
    for entries in (when_full, after):
        for name, vector in entries.items():
            assert name.endswith(".npy")  # no temporary file left behind
            np.testing.assert_array_equal(np.float32(vector), expected[name.removesuffix(".npy")])


@needs_mounts
def test_a_read_only_place_is_one_line_naming_it(sample_corpus, tmp_path):
    report = _scenario("read_only", sample_corpus, tmp_path)
    disk = str(tmp_path / "disk")
    _one_line(report["model"], f"{disk}/model", "Read-only file system")
    assert report["intact"] and report["predict"]["rc"] == 0
    _one_line(report["cache"], disk, "Read-only file system")


def _pinid(*args: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "pinid", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})  # fmt: skip


def test_two_trains_into_one_folder_one_wins_and_the_other_refuses(sample_corpus, tmp_path):
    out = tmp_path / "model"
    first = _pinid("train", "--data", str(sample_corpus), "--out", str(out))
    lock = lock_file(out)

    def holds() -> bool:
        return lock.is_file() and lock.read_text().strip() == str(first.pid)

    deadline = time.monotonic() + 120
    while not holds() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holds(), "the first train never took the lock"
    # paused while it holds the lock: a 20-pin model trains in seconds, and the second
    # train must meet the first one still writing, not a finished folder
    first.send_signal(signal.SIGSTOP)
    second = None
    try:
        assert first.poll() is None, "the first train ended before it could be paused"
        second = _pinid("train", "--data", str(sample_corpus), "--out", str(out))
        assert second.wait(timeout=300) == 2
    finally:
        first.send_signal(signal.SIGCONT)
        if second is not None and second.poll() is None:
            second.kill()
    refusal = second.stderr.read()
    assert f"another pinid (pid {first.pid}) is writing it" in refusal and str(out) in refusal
    assert refusal.count("\n") == 1
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert Model.load(out).identify(text="bird").candidates
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing beside it
    again = _pinid("train", "--data", str(sample_corpus), "--out", str(out))
    assert again.wait(timeout=600) == 0  # the lock went with the first


def test_two_feature_runs_on_one_cache_agree_and_damage_no_entry(sample_corpus, tmp_path):
    env = {"PINID_CACHE_DIR": str(tmp_path / "shared")}
    runs = [_pinid("features", "--data", str(sample_corpus), env=env) for _ in range(2)]
    assert [run.wait(timeout=600) for run in runs] == [0, 0], [r.stderr.read() for r in runs]
    paths = [p.image for p in load_dataset(sample_corpus).pins]
    shared = ImageFeatureExtractor(cache_root=tmp_path / "shared", progress=False)
    alone = ImageFeatureExtractor(cache_root=tmp_path / "alone", progress=False)
    np.testing.assert_array_equal(shared.extract(paths).features, alone.extract(paths).features)
    assert shared.cache.writes == 0  # every entry was there, complete
    assert not [p for p in (tmp_path / "shared").rglob("*.tmp")]
