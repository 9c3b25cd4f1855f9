"""``pinid features``: computed once, then from the cache; unreadable files named; kill-safe."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pinid.cli import main
from pinid.features.extract import ImageFeatureExtractor
from tests.conftest import write_image, write_manifest


def test_second_run_takes_everything_from_the_cache(sample_corpus, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PINID_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["features", "--data", str(sample_corpus)]) == 0
    first = capsys.readouterr().out
    assert main(["features", "--data", str(sample_corpus)]) == 0
    second = capsys.readouterr().out
    assert "20 pins, " in first and "0 from cache" in first
    assert "0 computed, 20 from cache, 0 same image as another pin, 0 unreadable" in second


def test_unreadable_images_are_named_and_the_rate_enforced(tmp_path, capsys):
    rows = []
    for i in range(10):
        write_image(tmp_path / f"ok{i}.png", i)
        rows.append({"pin_id": f"ok{i}", "user": "u", "text": "", "image": f"ok{i}.png"})
    (tmp_path / "bad.jpg").write_text("text, not a JPEG")
    rows.append({"pin_id": "bad", "user": "u", "text": "", "image": "bad.jpg"})
    manifest = write_manifest(tmp_path, rows)
    assert main(["features", "--data", str(manifest), "--max-unreadable", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable" in out and "bad (" in out and "bad.jpg): unreadable: not an image" in out
    assert main(["features", "--data", str(manifest)]) == 2  # 1 of 11 > 5 %
    assert "1 of 11 images unreadable" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_mid_run_then_rerun_completes_with_identical_features(tmp_path):
    rows = []
    for i in range(120):
        write_image(tmp_path / "img" / f"{i}.png", 1000 + i, size=(96, 80))
        rows.append({"pin_id": str(i), "user": "u", "text": "", "image": f"img/{i}.png"})
    manifest = write_manifest(tmp_path, rows)
    cache = tmp_path / "cache"
    env = {**os.environ, "PINID_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "pinid", "features", "--data", str(manifest)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(cache.rglob("*.npy"))) < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(cache.rglob("*.npy")))
    assert 12 <= done_before < 120, "the kill must land mid-run"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert f"{120 - done_before} computed, {done_before} from cache" in rerun.stdout

    paths = [tmp_path / "img" / f"{i}.png" for i in range(120)]
    resumed = ImageFeatureExtractor(cache_root=cache, progress=False).extract(paths)
    assert resumed.from_cache == 120
    fresh = ImageFeatureExtractor(cache_root=tmp_path / "fresh", progress=False).extract(paths)
    assert fresh.computed == 120
    np.testing.assert_allclose(resumed.features, fresh.features, rtol=1e-5, atol=1e-5)


def test_an_image_repeated_far_apart_is_computed_once(tmp_path):
    """The decode look-ahead checks the cache before the first copy's batch has written it."""
    paths = [write_image(tmp_path / f"{i}.png", i) for i in range(12)]
    for i in (0, 5):
        shutil.copy(paths[i], tmp_path / f"copy{i}.png")
        paths.append(tmp_path / f"copy{i}.png")
    extractor = ImageFeatureExtractor(cache_root=tmp_path / "cache", progress=False)
    result = extractor.extract(paths)
    assert (result.computed, result.duplicates, extractor.cache.writes) == (12, 2, 12)
    assert result.readable.all()
    assert np.array_equal(result.features[12:], result.features[[0, 5]])
