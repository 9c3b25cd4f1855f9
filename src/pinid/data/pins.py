"""Pins and datasets: the one in-memory shape every later stage reads."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pinid.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".svg", ".heic", ".heif", ".avif")
MIN_PINS_TO_SPLIT = 3
"""A user needs one pin in each of train, validation and test."""


class PinidWarning(UserWarning):
    """Something pinid worked around; the CLI prints it as one line."""


@dataclass(frozen=True)
class Pin:
    """An image plus a short text, posted by ``user`` (the label), optionally on a ``board``."""

    pin_id: str
    user: str
    text: str
    image: Path
    board: str | None = None


@dataclass(frozen=True)
class Dataset:
    """Validated pins in a stable order (as listed in the manifest or sorted from the folder)."""

    pins: tuple[Pin, ...]
    root: Path
    source: Path

    def __len__(self) -> int:
        return len(self.pins)

    @property
    def users(self) -> list[str]:
        return sorted({pin.user for pin in self.pins})

    def pins_per_user(self) -> Counter[str]:
        return Counter(pin.user for pin in self.pins)

    def drop_small_users(self, minimum: int = MIN_PINS_TO_SPLIT, strict: bool = False) -> Dataset:
        """Drop users with fewer than ``minimum`` pins (warn, or raise with ``strict``); at
        least two users must remain, or there is nobody to tell apart."""
        counts = self.pins_per_user()
        small = sorted(user for user, n in counts.items() if n < minimum)
        if len(counts) - len(small) < 2:
            raise DataError(
                f"{self.source}: {len(counts) - len(small)} user(s) with {minimum} or more pins; "
                "identification needs at least 2"
            )
        if not small:
            return self
        listed = ", ".join(f"{user!r} ({counts[user]})" for user in small)
        message = (
            f"{self.source}: {len(small)} user(s) with fewer than {minimum} pins "
            f"cannot be split: {listed}"
        )
        if strict:
            raise DataError(message)
        warnings.warn(message + "; dropped", PinidWarning, stacklevel=2)
        dropped = set(small)
        return Dataset(tuple(p for p in self.pins if p.user not in dropped), self.root, self.source)


def check_unique_ids(pins: Sequence[Pin], where: Sequence[str]) -> None:
    """Refuse a duplicate ``pin_id``; ``where[i]`` says where pin ``i`` came from."""
    first: dict[str, str] = {}
    for pin, origin in zip(pins, where, strict=True):
        if pin.pin_id in first:
            raise DataError(
                f"{origin}: duplicate pin_id {pin.pin_id!r} (first at {first[pin.pin_id]})"
            )
        first[pin.pin_id] = origin


def safe_image_path(root: Path, relative: str, origin: str) -> Path:
    """Resolve an image path given relative to ``root``, refusing anything that leaves it."""
    if not relative:
        raise DataError(f"{origin}: empty image path")
    candidate = Path(relative)
    if candidate.is_absolute() or relative.startswith(("/", "\\")) or ":" in candidate.parts[0]:
        raise DataError(
            f"{origin}: image path {relative!r} is absolute; give it relative to {root}"
        )
    if ".." in candidate.parts:
        raise DataError(
            f"{origin}: image path {relative!r} escapes the data folder {root.resolve()}"
        )
    path = root / candidate
    try:
        resolved = path.resolve()
        inside = resolved.is_relative_to(root.resolve())
        is_file = resolved.is_file()
    except (OSError, ValueError, RuntimeError) as exc:  # NUL byte, name too long, symlink loop
        raise DataError(f"{origin}: unusable image path {relative!r} ({exc})") from None
    if not inside:
        raise DataError(
            f"{origin}: image path {relative!r} is a symlink leading outside the data folder {root}"
        )
    if not is_file:
        raise DataError(f"{origin}: image file {relative!r} not found in {root}")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(
            f"{origin}: image {relative!r} has an unsupported extension "
            f"(accepted: {' '.join(IMAGE_EXTENSIONS)})"
        )
    return path


def decode_text(raw: bytes, origin: str) -> str:
    """UTF-8 text (a byte-order mark, as Excel writes, is dropped); invalid bytes become U+FFFD
    with a warning, never a crash."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        warnings.warn(
            f"{origin}: text is not valid UTF-8 (byte {exc.start}); undecodable bytes replaced",
            PinidWarning,
            stacklevel=2,
        )
        return raw.decode("utf-8-sig", errors="replace")
