"""A generated corpus of hostile and broken inputs, with what pinid must do with each.

Nothing here is a committed binary: every file is written by this script, so each case says
exactly what it is. Run it to look at the files::

    python tests/hostile_corpus.py OUT_DIR

``OUT_DIR/data`` is the user's data folder; ``OUT_DIR/outside`` holds files that hostile inputs
point at and that pinid must never read (``SECRET`` is their content).
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

SECRET = "pinid-must-never-read-this"


@dataclass(frozen=True)
class ImageCase:
    """A pin image and its fate: ``"used"`` (decoded, features computed) or ``"skipped"``
    (left out with a reason containing ``reason``); ``status`` is the web service's answer."""

    name: str
    file: str
    outcome: str
    reason: str = ""
    status: int = 200


IMAGE_CASES = (
    ImageCase("truncated-jpeg", "truncated.jpg", "skipped", "corrupt or truncated", 422),
    ImageCase("zero-bytes", "empty.png", "skipped", "empty file", 415),
    ImageCase("png-claims-200000x200000", "huge_header.png", "skipped", "exceeds", 413),
    ImageCase("gif-10000-frames", "frames.gif", "used"),
    ImageCase("cmyk-jpeg", "cmyk.jpg", "used"),
    ImageCase("16-bit-png", "sixteen_bit.png", "used"),
    ImageCase("palette-with-transparency", "palette_alpha.png", "used"),
    ImageCase("text-saved-as-jpg", "text.jpg", "skipped", "not an image", 415),
    ImageCase("svg-external-entity", "xxe.svg", "skipped", "refused DTD", 422),
    ImageCase("svg-billion-laughs", "laughs.svg", "skipped", "refused DTD", 422),
    ImageCase("svg-image-href-local-file", "href_file.svg", "used"),
    ImageCase("svg-image-href-http", "href_http.svg", "used"),
    ImageCase("svg-nested-use", "nested_use.svg", "skipped", "too complex", 413),
    ImageCase("phone-jpeg-48mp", "phone.jpg", "used"),
    ImageCase("jpeg-claims-259mp", "huge_header.jpg", "skipped", "exceeds", 413),
    ImageCase("progressive-jpeg-claims-45mp", "progressive.jpg", "skipped", "exceeds", 413),
    ImageCase("heic-phone-photo", "phone.heic", "used"),
    ImageCase("avif-phone-photo", "phone.avif", "used"),
    ImageCase("avif-48mp", "huge.avif", "skipped", "exceeds", 413),
    ImageCase("heic-cut-short", "truncated.heic", "skipped", "corrupt or truncated", 422),
    ImageCase("heic-size-lies", "size_lies.heic", "skipped", "corrupt or truncated", 422),
)
"""SVGs whose only fault is a reference to elsewhere render without it ("used"): the reference
is refused, never followed."""

MANIFEST_CASES = {
    "parent-path": ("../outside/secret.png", "escapes the data folder"),
    "absolute-path": ("{outside}/secret.png", "absolute"),
    "symlink-outside": ("link_to_secret.png", "outside the data folder"),
    "duplicate-id": (None, "duplicate pin_id"),
    "missing-column": (None, "missing column"),
}
"""Manifest faults stop every command with one line naming the manifest and the problem."""


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_header_png() -> bytes:
    """A valid PNG signature and IHDR claiming 200,000 x 200,000 pixels, and almost no data."""
    header = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def gif_with_frames(n: int) -> bytes:
    """An animated GIF of ``n`` 2x2 frames: the frame block of a two-frame GIF, repeated."""
    frames = [Image.new("P", (2, 2), i % 2) for i in range(2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=10, loop=0)
    data = buffer.getvalue()
    # Frames start at the graphic control extensions (0x21 0xF9); the file ends with 0x3B.
    first = data.index(b"\x21\xf9")
    second = data.index(b"\x21\xf9", first + 1)
    block = data[second:-1]
    return data[:second] + block * (n - 1) + b"\x3b"


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def phone_photo(width: int = 8064, height: int = 6048) -> Image.Image:
    """A phone-sized picture (48 MP by default): left half red, right half blue (cheap to
    encode, easy to check)."""
    img = Image.new("RGB", (width, height), (220, 20, 20))
    img.paste((20, 20, 220), (width // 2, 0, width, height))
    return img


def _jpeg_claiming(width: int, height: int, **options) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height`` pixels."""
    data = bytearray(_encoded(Image.new("L", (16, 16), 128), "JPEG", **options))
    sof = data.index(b"\xff\xc2" if options.get("progressive") else b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _heic_claiming(width: int, height: int) -> bytes:
    """A small HEIC whose image extents ("ispe" box) claim ``width`` x ``height`` pixels."""
    data = bytearray(_encoded(phone_photo(64, 48), "HEIF"))
    at = data.index(b"ispe")
    data[at + 8 : at + 16] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def _svg(body: str, doctype: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?>\n{doctype}'
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="64" height="64">{body}</svg>'
    ).encode()


@cache  # the phone photos take seconds to encode
def image_bytes(outside: Path, http_port: int) -> dict[str, bytes]:
    """The file name -> bytes of every image case."""
    import pinid.features.images  # noqa: F401  (registers the HEIC and AVIF encoders)

    photo = Image.radial_gradient("L").resize((96, 96)).convert("RGB")
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(0, (10, 10, 30, 30))
    laughs = "".join(
        f'<!ENTITY l{i} "{"".join(f"&l{i - 1};" for _ in range(10))}">' for i in range(1, 10)
    )
    nested = "".join(
        f'<g id="u{i}"><use xlink:href="#u{i - 1}"/><use xlink:href="#u{i - 1}"/></g>'
        for i in range(1, 40)
    )
    return {
        "truncated.jpg": _encoded(photo, "JPEG")[:300],
        "empty.png": b"",
        "huge_header.png": huge_header_png(),
        "frames.gif": gif_with_frames(10_000),
        "cmyk.jpg": _encoded(photo.convert("CMYK"), "JPEG"),
        "sixteen_bit.png": _encoded(
            Image.fromarray((np.arange(64 * 64, dtype=np.uint16) * 16).reshape(64, 64)), "PNG"
        ),
        "palette_alpha.png": _encoded(palette, "PNG", transparency=0),
        "text.jpg": b"This is a shopping list, not a picture.\n" * 20,
        "xxe.svg": _svg(
            "<text>&secret;</text>",
            f'<!DOCTYPE svg [<!ENTITY secret SYSTEM "file://{outside}/secret.txt">]>\n',
        ),
        "laughs.svg": _svg("<text>&l9;</text>", f'<!DOCTYPE svg [<!ENTITY l0 "lol">{laughs}]>\n'),
        "href_file.svg": _svg(
            '<rect width="64" height="32" fill="red"/>'
            f'<image href="file://{outside}/secret.png" width="64" height="64"/>'
        ),
        "href_http.svg": _svg(
            '<rect width="64" height="32" fill="blue"/>'
            f'<image href="http://127.0.0.1:{http_port}/pixel.png" width="64" height="64"/>'
        ),
        "nested_use.svg": _svg(
            f'<defs><rect id="u0" width="1" height="1"/>{nested}</defs><use xlink:href="#u39"/>'
        ),
        "phone.jpg": _encoded(phone_photo(), "JPEG", quality=85),
        "huge_header.jpg": _jpeg_claiming(16_100, 16_100),  # a baseline JPEG's limit: 256 MP
        "progressive.jpg": _jpeg_claiming(9000, 5000, progressive=True),  # 40 MP
        "phone.heic": _encoded(phone_photo(1200, 900), "HEIF"),
        "phone.avif": _encoded(phone_photo(1200, 900), "AVIF"),
        "huge.avif": _encoded(phone_photo(), "AVIF", quality=30, speed=10),  # 2 KB, 146 MB
        "truncated.heic": _encoded(phone_photo(64, 48), "HEIF")[:-20],
        "size_lies.heic": _heic_claiming(8064, 6048),
    }


BIG_TEXT = "spam " * 1_000_000  # 5 MB on one line
TEXT_CASES = {
    "5-MB-one-line-text": BIG_TEXT,
    "nul-bytes": "apple\x00 pie\x00\x00 recipe",
    "csv-formula": '=HYPERLINK("http://example.invalid","click")',
}
"""Texts that are data, not faults: they are kept as given (tokenised like any other)."""
INVALID_UTF8_TEXT = b"caf\xe9 cr\xe8me \xff\xfe apple"
"""In a folder-tree ``.txt``: decoded with replacement characters and a warning naming it."""


def write_outside(root: Path) -> Path:
    outside = root / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.txt").write_text(SECRET)
    Image.new("RGB", (8, 8), "green").save(outside / "secret.png")
    return outside


def write_corpus(root: Path, base_pins: list[dict], base_folder: Path, http_port: int) -> Path:
    """``root/data/manifest.jsonl``: the base pins (copied), one pin per image case and per
    text case; returns the manifest. Users of the hostile pins cycle through the base users."""
    outside = write_outside(root)
    data = root / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for pin in base_pins:
        target = data / pin["image"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((base_folder / pin["image"]).read_bytes())
        rows.append(pin)
    users = sorted({p["user"] for p in base_pins})
    contents = image_bytes(outside.resolve(), http_port)
    for i, case in enumerate(IMAGE_CASES):
        (data / "images" / case.file).write_bytes(contents[case.file])
        rows.append(
            {
                "pin_id": f"hostile-{case.name}",
                "user": users[i % len(users)],
                "text": f"hostile case {case.name}",
                "image": f"images/{case.file}",
            }
        )
    for i, (name, text) in enumerate(TEXT_CASES.items()):
        user, image = users[i % len(users)], base_pins[i]["image"]
        rows.append({"pin_id": f"text-{name}", "user": user, "text": text, "image": image})
    manifest = data / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def write_bad_manifest(root: Path, case: str, good: dict) -> Path:
    """A manifest of two good-looking pins whose second line has the fault ``case``."""
    outside = write_outside(root)
    data = root / f"bad-{case}"
    (data / "images").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "white").save(data / "images" / "ok.png")
    first = {**good, "pin_id": "a", "image": "images/ok.png"}
    second = {**good, "pin_id": "b", "image": "images/ok.png"}
    path, _ = MANIFEST_CASES[case]
    if case == "symlink-outside":
        (data / path).symlink_to(outside / "secret.png")
    if path is not None:
        second["image"] = path.format(outside=outside.resolve())
    elif case == "duplicate-id":
        second["pin_id"] = "a"
    else:
        del second["user"]
    manifest = data / "manifest.jsonl"
    manifest.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n", encoding="utf-8")
    return manifest


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    outside = write_outside(out)
    folder = out / "data" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in image_bytes(outside.resolve(), 9).items():
        (folder / name).write_bytes(content)
    for case in MANIFEST_CASES:
        write_bad_manifest(out, case, {"user": "u", "text": "t"})
    print(f"{len(IMAGE_CASES)} image cases in {folder}, {len(MANIFEST_CASES)} bad manifests")
