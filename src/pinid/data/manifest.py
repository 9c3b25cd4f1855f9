"""Manifests: JSON Lines or CSV with columns pin_id, user, text, image [, board]."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from pinid.data.pins import Dataset, Pin, check_unique_ids, decode_text, safe_image_path
from pinid.errors import DataError

REQUIRED_COLUMNS = ("pin_id", "user", "text", "image")
MANIFEST_SUFFIXES = (".jsonl", ".csv")


def load_manifest(path: str | Path) -> Dataset:
    """Load and validate a manifest; image paths are relative to the manifest's folder."""
    path = Path(path)
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise DataError(f"{path}: a manifest must end in .jsonl or .csv")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read manifest ({exc.strerror})") from None
    text = decode_text(raw, str(path))
    rows = _jsonl_rows(text, path) if path.suffix.lower() == ".jsonl" else _csv_rows(text, path)
    return dataset_from_rows(rows, path.parent, path)


def dataset_from_records(records: Sequence[Mapping], root: str | Path) -> Dataset:
    """Pins given as records with the manifest's columns (a pandas DataFrame's
    ``to_dict("records")``, say), image paths relative to ``root``, validated as a manifest."""
    root = Path(root)
    rows = [(number, dict(record)) for number, record in enumerate(records, start=1)]
    return dataset_from_rows(rows, root, root / "<records>")


def dataset_from_rows(rows: list[tuple[int, dict]], root: Path, source: Path) -> Dataset:
    """Validated pins from numbered rows; errors name ``source`` and the row's number."""
    pins, origins = [], []
    for line, row in rows:
        origin = f"{source}:{line}"
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise DataError(f"{origin}: missing column(s) {', '.join(missing)}")
        pin_id, user = _field(row, "pin_id", origin), _field(row, "user", origin)
        board = row.get("board")
        pins.append(
            Pin(
                pin_id=pin_id,
                user=user,
                text=cell_text(row["text"]),
                image=safe_image_path(root, _field(row, "image", origin), origin),
                board=None if board in (None, "") else str(board),
            )
        )
        origins.append(origin)
    if not pins:
        raise DataError(f"{source}: no pins")
    check_unique_ids(pins, origins)
    return Dataset(tuple(pins), root, source)


def missing(value: object) -> bool:
    """An empty cell: None, or a DataFrame's NaN."""
    return value is None or (isinstance(value, float) and value != value)


def cell_text(value: object) -> str:
    """A text cell; a missing one is an empty text."""
    return "" if missing(value) else str(value)


def _field(row: dict, name: str, origin: str) -> str:
    value = row[name]
    if value is None or isinstance(value, (dict, list, bool)) or str(value).strip() == "":
        raise DataError(f"{origin}: column {name!r} must be a non-empty string")
    return str(value).strip()


def _jsonl_rows(text: str, path: Path) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 is data
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{number}: not valid JSON ({exc.msg}, column {exc.colno})"
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: each line must be a JSON object")
        rows.append((number, row))
    return rows


def _csv_rows(text: str, path: Path) -> list[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(missing)}")
    rows = []
    try:
        for row in reader:
            if None in row:
                raise DataError(f"{path}:{reader.line_num}: more cells than header columns")
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return rows
