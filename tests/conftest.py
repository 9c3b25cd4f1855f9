"""Shared fixtures: a small real openclipart sample and generated pin datasets."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
OPENCLIPART_SAMPLE = FIXTURES / "openclipart"


def pytest_configure(config) -> None:
    """Never touch the user's ~/.cache/pinid from a test (subprocesses inherit this too)."""
    os.environ["PINID_CACHE_DIR"] = tempfile.mkdtemp(prefix="pinid-test-cache-")


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory) -> Path:
    """The committed openclipart sample built into a manifest: 4 users x 5 real clips."""
    from pinid.data.openclipart import build_corpus

    out = tmp_path_factory.mktemp("sample-corpus")
    build_corpus(out, min_pins=5, source=OPENCLIPART_SAMPLE, workers=1)
    return out / "manifest.jsonl"


def write_image(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write_manifest(folder: Path, rows: list[dict], name: str = "manifest.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def small_manifest(tmp_path) -> Path:
    """Three users with six pins each, images in images/."""
    rows = []
    for u, user in enumerate(["alice", "bob", "carol"]):
        for i in range(6):
            rel = f"images/{user}_{i}.png"
            write_image(tmp_path / rel, seed=u * 100 + i)
            rows.append({"pin_id": f"{user}-{i}", "user": user, "text": f"pin {i}", "image": rel})
    return write_manifest(tmp_path, rows)


@pytest.fixture(scope="session")
def sample_model(sample_corpus, tmp_path_factory) -> Path:
    """``pinid train`` on the sample corpus: a real model folder, to be copied before changing."""
    from pinid.cli import main

    out = tmp_path_factory.mktemp("sample-model") / "model"
    assert main(["train", "--data", str(sample_corpus), "--out", str(out)]) == 0
    return out
