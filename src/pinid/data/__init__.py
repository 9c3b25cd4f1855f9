"""Data: pins, datasets (manifest or folder tree), the split, the openclipart corpus."""

from __future__ import annotations

from pathlib import Path

from pinid.data.folder import load_folder
from pinid.data.manifest import load_manifest
from pinid.data.pins import Dataset, Pin, PinidWarning
from pinid.data.split import Split, load_split, make_split, save_split
from pinid.errors import DataError

__all__ = [
    "DataError",
    "Dataset",
    "Pin",
    "PinidWarning",
    "Split",
    "load_dataset",
    "load_split",
    "make_split",
    "save_split",
]


def load_dataset(path: str | Path) -> Dataset:
    """A manifest (``.jsonl``/``.csv``) or a folder tree, validated."""
    path = Path(path)
    if path.is_dir():
        return load_folder(path)
    if not path.exists():
        raise DataError(f"{path}: no such manifest or folder")
    return load_manifest(path)
