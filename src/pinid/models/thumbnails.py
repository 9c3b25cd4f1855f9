"""Small JPEG copies of the training images, kept in the model folder as evidence.

A model folder then shows its evidence wherever it is moved, and the web service serves these
files only, never the training paths recorded in ``model.json`` (which a hostile folder could
point anywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pinid.features.images import UnreadableImage, load_image

THUMBNAILS = "thumbnails"
THUMBNAIL_SIDE = 160
"""Longest side in pixels: sharp in a result list, about 4 KB per pin."""


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


def thumbnail_path(model_dir: Path, row: int) -> Path | None:
    """The thumbnail of training pin ``row``, if the model folder has one."""
    path = Path(model_dir) / THUMBNAILS / thumbnail_name(row)
    return path if path.is_file() else None
