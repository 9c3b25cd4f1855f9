"""Folder trees: ``ROOT/<user>/<board>/<pin>.<ext>`` with the text in ``<pin>.txt`` beside it."""

from __future__ import annotations

import warnings
from pathlib import Path

from pinid.data.pins import (
    IMAGE_EXTENSIONS,
    Dataset,
    Pin,
    PinidWarning,
    check_unique_ids,
    decode_text,
    safe_image_path,
)
from pinid.errors import DataError

MAX_TEXT_BYTES = 1024 * 1024


def load_folder(root: str | Path) -> Dataset:
    """Every image two levels below ``root`` is a pin of user ``<user>`` on board ``<board>``.

    An image directly in ``ROOT/<user>/`` is a pin without a board. Other files are ignored
    (with a warning for images at an unexpected depth).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    pins, origins, misplaced = [], [], []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or path.is_dir():
            continue
        parts = path.relative_to(root).parts
        if len(parts) not in (2, 3):
            misplaced.append(str(path.relative_to(root)))
            continue
        relative = path.relative_to(root).as_posix()
        image = safe_image_path(root, relative, str(path))
        user, board = parts[0], (parts[1] if len(parts) == 3 else None)
        pins.append(
            Pin(
                pin_id=path.relative_to(root).with_suffix("").as_posix(),
                user=user,
                text=_read_text(root, path.with_suffix(".txt")),
                image=image,
                board=board,
            )
        )
        origins.append(str(path))
    if misplaced:
        warnings.warn(
            f"{root}: ignored {len(misplaced)} image(s) not at <user>/<board>/<pin>: "
            + ", ".join(misplaced[:5])
            + (" …" if len(misplaced) > 5 else ""),
            PinidWarning,
            stacklevel=2,
        )
    if not pins:
        raise DataError(f"{root}: no pins found (expected <user>/<board>/<pin>.<jpg|png|…>)")
    check_unique_ids(pins, origins)
    return Dataset(tuple(pins), root, root)


def _read_text(root: Path, path: Path) -> str:
    if not path.exists() and not path.is_symlink():
        return ""
    try:
        resolved = path.resolve()
        if not resolved.is_relative_to(root.resolve()):
            raise DataError(f"{path}: text file is a symlink leading outside the data folder")
        if not resolved.is_file():  # a FIFO would block forever, a folder cannot be read
            raise DataError(f"{path}: text is not a regular file")
        with resolved.open("rb") as fh:
            raw = fh.read(MAX_TEXT_BYTES + 1)
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read text ({exc})") from None
    if len(raw) > MAX_TEXT_BYTES:
        raise DataError(f"{path}: text longer than {MAX_TEXT_BYTES} bytes")
    return decode_text(raw, str(path)).strip()
