"""Small JPEG copies of the training images, kept in the model folder as evidence.

A model folder then shows its evidence wherever it is moved, and the web service serves these
files only, never the training paths recorded in ``model.json`` (which a hostile folder could
point anywhere); it reads them without following symlinks, for the same reason.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pinid.features.images import UnreadableImage, load_image

THUMBNAILS = "thumbnails"
THUMBNAIL_SIDE = 160
"""Longest side in pixels: sharp in a result list, about 4 KB per pin."""
MAX_THUMBNAIL_BYTES = 1024 * 1024


def thumbnail_name(row: int) -> str:
    return f"{row}.jpg"


def _write_one(path: str, target: Path) -> bool:
    try:
        image = load_image(path)
    except UnreadableImage:
        return False
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    image.save(target, "JPEG", quality=85, optimize=True)
    return True


def write_thumbnails(images: Sequence[str], folder: Path) -> int:
    """``folder/thumbnails/<row>.jpg`` for every readable image; returns how many were written."""
    out = folder / THUMBNAILS
    out.mkdir()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pinid-thumb") as pool:
        written = pool.map(
            _write_one, images, [out / thumbnail_name(row) for row in range(len(images))]
        )
        return sum(written)


def available_thumbnails(model_dir: Path, n_rows: int) -> frozenset[int]:
    """Rows with a thumbnail that is a plain file (not a symlink) named as pinid names them."""
    rows = set()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(Path(model_dir) / THUMBNAILS):
            stem, dot, suffix = entry.name.partition(".")
            if (dot and suffix == "jpg" and stem.isdigit() and stem == str(int(stem))
                    and int(stem) < n_rows and entry.is_file(follow_symlinks=False)):  # fmt: skip
                rows.add(int(stem))
    return frozenset(rows)


def read_thumbnail(model_dir: Path, row: int) -> bytes | None:
    """The thumbnail's bytes; never follows a symlink (a model folder may come from anyone)."""
    path = Path(model_dir) / THUMBNAILS / thumbnail_name(row)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_THUMBNAIL_BYTES + 1)
    return data if len(data) <= MAX_THUMBNAIL_BYTES else None
