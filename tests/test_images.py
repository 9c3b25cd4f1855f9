"""Image decoding: every awkward case becomes RGB on white or a clear 'unreadable' reason."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from pinid.features.images import UnreadableImage, decode_image, load_image
from tests.hostile_corpus import phone_photo


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    out = decode_image(_encode(img, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (255, 0, 0)


def test_palette_with_transparency_on_white():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((1, 1), 1)
    out = decode_image(_encode(img, "PNG", transparency=0))
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((1, 1)) == (0, 255, 0)


def test_cmyk_jpeg_becomes_rgb():
    out = decode_image(_encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    assert out.mode == "RGB"
    r, g, b = out.getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_png_is_rescaled_not_clipped():
    array = np.full((8, 8), 32768, dtype=np.uint16)
    out = decode_image(_encode(Image.fromarray(array), "PNG"))
    assert out.mode == "RGB"
    assert 120 <= out.getpixel((0, 0))[0] <= 135


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(data).getpixel((4, 4)) == (255, 0, 0)


def test_svg_is_rasterised_on_white():
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10">'
        b'<rect width="5" height="5"/></svg>'
    )
    out = decode_image(svg, "x.svg")
    assert out.size == (256, 128) and out.getpixel((200, 100)) == (255, 255, 255)


def test_truncated_jpeg_is_unreadable():
    data = _encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(UnreadableImage, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])


def test_text_saved_as_jpg_is_unreadable(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("this is not an image")
    with pytest.raises(UnreadableImage, match="not an image in an accepted format"):
        load_image(path)


def test_zero_byte_file_is_unreadable(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnreadableImage, match="empty file"):
        load_image(tmp_path / "empty.png")


def test_format_outside_the_accepted_list_is_refused():
    with pytest.raises(UnreadableImage, match="accepted format"):
        decode_image(_encode(Image.new("RGB", (8, 8)), "BMP"))


def test_huge_header_is_refused_before_decoding():
    # a real PNG header claiming 200,000 x 200,000 pixels
    data = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = (200_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    with pytest.raises(UnreadableImage, match=r"exceeds|decompression bomb"):
        decode_image(bytes(data))


def test_phone_size_jpeg_is_decoded_at_reduced_scale():
    exif = Image.Exif()
    exif[0x0112] = 6  # held upright: rotate to display
    out = decode_image(_encode(phone_photo(), "JPEG", quality=85, exif=exif.tobytes()))
    assert out.size == (1512, 2016)  # a quarter of 8064 x 6048, turned upright
    top, bottom = out.getpixel((756, 100)), out.getpixel((756, 1900))
    assert top[0] > 180 and top[2] < 60 and bottom[2] > 180 and bottom[0] < 60


def test_jpeg_over_256_mp_is_refused_before_decoding():
    data = bytearray(_encode(Image.new("RGB", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")  # baseline frame header: precision, height, width
    data[sof + 5 : sof + 9] = (16_100).to_bytes(2, "big") * 2  # 259 MP, 4 MP at 1/8
    with pytest.raises(UnreadableImage, match="exceeds the 256,000,000 limit of a baseline"):
        decode_image(bytes(data))


def test_progressive_jpeg_over_40_mp_is_refused():
    # its decoder would hold the whole frame's coefficients: 1 MB of file, gigabytes of memory
    data = _encode(Image.new("L", (9000, 5000), 128), "JPEG", progressive=True)
    with pytest.raises(UnreadableImage, match="40,000,000 limit of a progressive") as raised:
        decode_image(data)
    assert raised.value.kind == "oversize"
    assert decode_image(_encode(Image.new("L", (90, 50)), "JPEG", progressive=True)).size == (
        90, 50)  # fmt: skip


def test_jpeg_magic_then_junk_is_not_an_image():
    with pytest.raises(UnreadableImage, match="accepted format") as raised:
        decode_image(b"\xff\xd8\xff" + b"not a jpeg at all" * 10, "pin.jpg")
    assert raised.value.kind == "format"


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_decode_like_their_jpeg_twin(fmt):
    img = phone_photo(64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6
    twin = np.asarray(decode_image(_encode(img, "JPEG", quality=95, exif=exif.tobytes())), float)
    out = decode_image(_encode(img, fmt, quality=95, exif=exif.tobytes()), f"photo.{fmt}")
    assert out.mode == "RGB" and out.size == (48, 64)  # orientation applied once
    assert np.abs(np.asarray(out, float) - twin).mean() < 8


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_over_the_pixel_limit_are_refused(fmt):
    data = _encode(phone_photo(), fmt, quality=30, **({"speed": 10} if fmt == "AVIF" else {}))
    assert len(data) < 200_000  # a small file that would decode to 146 MB
    with pytest.raises(UnreadableImage, match="exceeds the 40,000,000 limit") as raised:
        decode_image(data, f"photo.{fmt}")
    assert raised.value.kind == "oversize"


def test_heic_cut_short_is_unreadable():
    data = _encode(phone_photo(64, 48), "HEIF")
    with pytest.raises(UnreadableImage, match="corrupt or truncated") as raised:
        decode_image(data[:-20], "photo.heic")  # a download cut short: its pixels are missing
    assert raised.value.kind == "damaged"
