"""Full and read-only disks, for tests/test_faults.py: run as ``unshare -m python THIS SCENARIO
MOUNT CORPUS REPORT``, it mounts a small tmpfs at MOUNT in a mount namespace of its own (gone
when it ends), runs pinid commands against it and writes what it saw to REPORT (JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def pinid(*args: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-m", "pinid", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)  # fmt: skip
    return {"rc": done.returncode, "err": done.stderr}


def mount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)


def fill(folder: Path) -> None:
    """Write until the file system is full."""
    with open(folder / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def model_on_a_full_disk(disk: Path, corpus: str) -> dict:
    mount(disk, "size=4m")
    model = disk / "model"
    report = {"first": pinid("train", "--data", corpus, "--out", str(model))}
    before = (model / "model.json").read_bytes()
    fill(disk)
    report["full"] = pinid("train", "--data", corpus, "--out", str(model))
    report["intact"] = (model / "model.json").read_bytes() == before
    report["predict"] = pinid("predict", "--model", str(model), "--text", "bird")
    report["left"] = sorted(os.listdir(disk))
    (disk / "filler").unlink()
    report["again"] = pinid("train", "--data", corpus, "--out", str(model))
    return report


def cache_on_a_full_disk(disk: Path, corpus: str) -> dict:
    mount(disk, "size=64k")
    env = {"PINID_CACHE_DIR": str(disk / "cache")}
    report = {"full": pinid("features", "--data", corpus, env=env)}
    report["entries_when_full"] = _entries(disk / "cache")
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    report["again"] = pinid("features", "--data", corpus, env=env)
    report["entries"] = _entries(disk / "cache")
    return report


def read_only(disk: Path, corpus: str) -> dict:
    mount(disk, "size=4m")
    model = disk / "model"
    report = {"first": pinid("train", "--data", corpus, "--out", str(model))}
    before = (model / "model.json").read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    report["model"] = pinid("train", "--data", corpus, "--out", str(model))
    report["intact"] = (model / "model.json").read_bytes() == before
    report["predict"] = pinid("predict", "--model", str(model), "--text", "bird")
    report["cache"] = pinid("features", "--data", corpus, env={"PINID_CACHE_DIR": str(disk)})
    return report


def _entries(cache: Path) -> dict:
    """Every file under the cache: complete entries load, and no temporary file is left."""
    out = {}
    for path in sorted(cache.rglob("*")):
        if path.is_file():
            try:
                out[path.name] = np.load(path, allow_pickle=False).tolist()
            except (OSError, ValueError, EOFError) as exc:
                out[path.name] = f"unreadable: {exc}"
    return out


if __name__ == "__main__":
    scenario, disk, corpus, report = sys.argv[1:5]
    result = globals()[scenario](Path(disk), corpus)
    Path(report).write_text(json.dumps(result))
