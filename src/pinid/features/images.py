"""Robust image decoding: whatever a crawl hands us becomes RGB on white, or a clear reason.

Only the formats pinid accepts are opened (phones' HEIC through pillow-heif, AVIF through Pillow
itself); Pillow's decompression-bomb warning is an error; truncated files are never half-loaded;
EXIF orientation is applied; palette and alpha are composited on white; CMYK, 16-bit and 32-bit
modes are converted; animations give frame one. A JPEG too large to decode whole (a phone's
48-200 MP photo) is decoded at reduced scale instead, by the JPEG decoder itself.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

from pinid.data.svg import NOT_SVG, RENDER_SIDE, SvgError, rasterise

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "HEIF", "AVIF")
DECODE_VERSION = f"d1s{RENDER_SIDE}"
"""Part of the feature cache key: bump when decoding (or SVG rendering) changes its output."""
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000
"""Above this many pixels an image is refused as a possible decompression bomb (Pillow: 89M),
unless it is a JPEG that decodes below it at reduced scale."""
MAX_JPEG_PIXELS = 256_000_000
"""A baseline JPEG up to this many pixels (a 200 MP camera's) is decoded at reduced scale; a
progressive one is not (its decoder holds the whole frame's coefficients), so MAX_PIXELS stays
its limit."""
DRAFT_SIDE = 1024
"""A JPEG over MAX_PIXELS is decoded at 1/2, 1/4 or 1/8 scale (DCT scaling), the smallest that
keeps both sides at least this long: a few times the CNN's input, in a fraction of the time
and memory of a full decode. Smaller JPEGs decode as they always did (the feature cache and
the models' extractor ids stay valid)."""

pillow_heif.register_heif_opener()

ImageFile.LOAD_TRUNCATED_IMAGES = False


class UnreadableImage(ValueError):
    """An image pinid will not use; the message is the reason shown as ``unreadable: <reason>``.

    ``kind`` sorts reasons for callers that answer differently (the web service: 413, 415, 422):
    ``"oversize"`` (too many bytes or pixels, a decompression bomb), ``"format"`` (not an image
    pinid accepts) or ``"damaged"`` (an accepted format that cannot be decoded or read).
    """

    def __init__(self, reason: str, kind: str = "damaged") -> None:
        super().__init__(reason)
        self.kind = kind


def read_image_bytes(path: Path) -> bytes:
    """The file's bytes, refusing anything larger than pinid will decode."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise UnreadableImage(f"cannot read file ({exc.strerror})") from None
    return check_image_bytes(data)


def check_image_bytes(data: bytes) -> bytes:
    """``data`` unchanged, unless it is empty or larger than pinid will decode."""
    if len(data) > MAX_IMAGE_BYTES:
        raise UnreadableImage(f"file larger than {MAX_IMAGE_BYTES // 2**20} MB", "oversize")
    if not data:
        raise UnreadableImage("empty file", "format")
    return data


_RASTER_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"RIFF")


def _is_svg(data: bytes, name: str) -> bool:
    """SVG by content, or by name unless the bytes are plainly a raster format (HEIF and AVIF:
    an ISO media file, ``ftyp`` at byte 4)."""
    head = data.lstrip()[:5]
    if head in (b"<?xml", b"<svg ", b"<svg>"):
        return True
    raster = data.startswith(_RASTER_MAGIC) or data[4:8] == b"ftyp"
    return name.lower().endswith(".svg") and not raster


def decode_image(data: bytes, name: str = "") -> Image.Image:
    """Decode bytes (JPEG, PNG, WebP, GIF, HEIC/HEIF, AVIF or SVG) to an RGB image, or raise
    UnreadableImage."""
    if _is_svg(data, name):
        try:
            return rasterise(data)
        except SvgError as exc:
            kind = "oversize" if exc.oversize else "format" if exc.reason in NOT_SVG else "damaged"
            raise UnreadableImage(f"SVG {exc}", kind) from None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with _open(data) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise UnreadableImage(
                        f"{img.width}x{img.height} pixels exceeds the {MAX_PIXELS:,} limit",
                        "oversize",
                    )
                img.seek(0)  # first frame of an animation
                img.load()
                return to_rgb(ImageOps.exif_transpose(img))
        except UnreadableImage:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise UnreadableImage(f"decompression bomb ({exc})", "oversize") from None
        except UnidentifiedImageError:
            raise UnreadableImage(
                "not an image in an accepted format (JPEG, PNG, WebP, GIF, HEIC, AVIF, SVG)",
                "format",
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and type(exc) is not RuntimeError:
                raise  # RecursionError and the like: not the file's fault
            # RuntimeError: Pillow's AVIF decoder on damaged frames; one line: libheif's
            # messages end in a line break
            raise UnreadableImage(f"corrupt or truncated ({' '.join(str(exc).split())})") from None


def _open(data: bytes) -> Image.Image:
    """The image, not yet decoded. A JPEG is opened by its own plugin, which reads the header
    without Pillow's size check, so that one of any pixel count can first be scaled down
    (``draft``) and then meet pinid's; every other format meets Pillow's check as well."""
    if not data.startswith(b"\xff\xd8\xff"):
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    try:
        img = JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    except SyntaxError:  # JPEG's first bytes, then no JPEG header
        raise UnidentifiedImageError from None
    kind, limit = ("progressive", MAX_PIXELS) if img.info.get("progressive") else (
        "baseline", MAX_JPEG_PIXELS)  # fmt: skip
    if img.width * img.height > limit:
        raise UnreadableImage(
            f"{img.width}x{img.height} pixels exceeds the {limit:,} limit of a {kind} JPEG",
            "oversize",
        )
    if img.width * img.height > MAX_PIXELS:
        img.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))  # its size is now the scaled one
    return img


def load_image(path: str | Path) -> Image.Image:
    """Read and decode one image file."""
    path = Path(path)
    return decode_image(read_image_bytes(path), path.name)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB of any Pillow mode: 16/32-bit rescaled, palette and alpha composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(array.max()), 1.0)
        img = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode in ("L", "RGB") and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")
