"""Content-addressed, crash-safe feature cache.

One ``.npy`` file per image, keyed by the sha256 of the image bytes, under a folder named by the
extractor's full identity (decoding, preprocessing, name, weights). Entries are written to a
temporary name and renamed into place, so a kill never leaves a half-written entry that could be
read; a damaged entry (say, emptied by a power cut before the data reached the disk) is treated
as missing and recomputed. Entries are not fsynced one by one: losing one costs a recompute.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from pinid._atomic import naming_write_errors


class FeatureCache:
    """Feature vectors of one extractor, shared across runs and datasets."""

    def __init__(self, root: Path, extractor_id: str, dim: int) -> None:
        self.root = Path(root)
        self.folder = self.root / "features" / extractor_id
        self.dim = dim
        self.writes = 0

    def _path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}.npy"

    def get(self, sha256: str) -> np.ndarray | None:
        path = self._path(sha256)
        try:
            vector = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except Exception:  # damaged entry of any kind (EOFError for an empty file): recompute
            return None
        if vector.shape != (self.dim,) or vector.dtype != np.float32:
            return None
        return vector

    def contains(self, sha256: str) -> bool:
        """Whether an entry exists, without reading it."""
        return self._path(sha256).is_file()

    def put(self, sha256: str, vector: np.ndarray) -> None:
        # serialised first: np.save straight to a file reports a short write (a full disk)
        # without an errno, where a plain write raises ENOSPC
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(vector, dtype=np.float32), allow_pickle=False)
        self._write(self._path(sha256), lambda fh: fh.write(buffer.getvalue()))

    def _write(self, path: Path, write) -> None:
        """``path`` written whole or not at all; a full disk or a read-only cache is one line
        naming the entry, and leaves no temporary file behind."""
        with naming_write_errors(path):
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
