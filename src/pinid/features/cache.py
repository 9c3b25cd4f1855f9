"""Content-addressed, crash-safe feature cache.

One ``.npy`` file per image, keyed by the sha256 of the image bytes, under a folder named by the
extractor's full identity (name, preprocessing, weights). Entries are written to a temporary
name and renamed into place, so a kill never leaves a half-written entry that could be read; a
damaged entry is treated as missing and recomputed. Unreadable images are cached as their reason.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np


class FeatureCache:
    """Feature vectors of one extractor, shared across runs and datasets."""

    def __init__(self, root: Path, extractor_id: str, dim: int) -> None:
        self.folder = Path(root) / "features" / extractor_id
        self.dim = dim
        self.writes = 0

    def _path(self, sha256: str, suffix: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}{suffix}"

    def get(self, sha256: str) -> np.ndarray | None:
        path = self._path(sha256, ".npy")
        try:
            vector = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # damaged entry: recompute and overwrite
        if vector.shape != (self.dim,) or vector.dtype != np.float32:
            return None
        return vector

    def put(self, sha256: str, vector: np.ndarray) -> None:
        vector = np.ascontiguousarray(vector, dtype=np.float32)
        self._write(self._path(sha256, ".npy"), lambda fh: np.save(fh, vector, allow_pickle=False))

    def get_failure(self, sha256: str) -> str | None:
        try:
            return self._path(sha256, ".unreadable").read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def put_failure(self, sha256: str, reason: str) -> None:
        data = reason.encode("utf-8")
        self._write(self._path(sha256, ".unreadable"), lambda fh: fh.write(data))

    def _write(self, path: Path, write) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self.writes += 1
