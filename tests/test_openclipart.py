"""The openclipart importer on a committed sample of real clips, and hostile SVGs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from pinid.cli import main
from pinid.data import DataError, load_dataset
from pinid.data.openclipart import build_corpus
from pinid.data.svg import SvgError, rasterise, read_metadata
from tests.conftest import OPENCLIPART_SAMPLE


@pytest.fixture
def corpus(sample_corpus) -> Path:
    return sample_corpus.parent


def test_corpus_has_one_pin_per_clip_with_creator_and_board(corpus):
    dataset = load_dataset(corpus / "manifest.jsonl")
    assert len(dataset) == 20
    assert dataset.users == sorted(
        ["Architetto Francesco Rollandin", "Benji Park", "Jean-Victor Balin", "yves GUILLOU"]
    )
    boards = {p.board for p in dataset.pins}
    assert boards == {"animals", "computer", "food", "office", "shapes"}
    for pin in dataset.pins:
        assert pin.image.suffix == ".png" and pin.image.is_file()


def test_text_has_title_description_keywords_but_never_the_file_name(corpus):
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    by_text = {r["text"] for r in rows}
    assert "arrow-down-blue hash webpage shape computer arrow buttons" in by_text
    file_stems = [p.stem for p in OPENCLIPART_SAMPLE.rglob("*.svg")]
    for row in rows:
        lowered = row["text"].lower()
        assert not any(stem.lower() in lowered for stem in file_stems), row
        assert "benji" not in lowered or row["user"] == "Benji Park"
        assert "svg" not in row["image"] and row["image"].startswith("images/")


def test_rendered_images_keep_aspect_on_white(corpus):
    from PIL import Image

    dataset = load_dataset(corpus / "manifest.jsonl")
    for pin in dataset.pins:
        with Image.open(pin.image) as img:
            assert max(img.size) == 256 and img.mode == "RGB"
            assert img.getpixel((0, 0)) == (255, 255, 255) or min(img.size) == 256


def test_text_fields_option_and_summary(tmp_path, capsys):
    code = main(
        [
            "data", "openclipart", "--out", str(tmp_path), "--source", str(OPENCLIPART_SAMPLE),
            "--min-pins", "5", "--text-fields", "title",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "users: 4" in out and "pins: 20" in out and "pins per user: min 5 / median 5" in out
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert {"Armadillo", "happy monkey"} <= {r["text"] for r in rows}


def test_rerun_reuses_rendered_images(tmp_path):
    build_corpus(tmp_path, min_pins=5, source=OPENCLIPART_SAMPLE, workers=1)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "images").iterdir()}
    build_corpus(tmp_path, min_pins=5, source=OPENCLIPART_SAMPLE, workers=1)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "images").iterdir()} == stamps
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_min_pins_drops_creators_and_counts_skips(tmp_path):
    bad = tmp_path / "src" / "misc"
    bad.mkdir(parents=True)
    (bad / "broken.svg").write_bytes(b"<svg><unclosed>")
    for svg in OPENCLIPART_SAMPLE.rglob("*.svg"):
        target = tmp_path / "src" / svg.relative_to(OPENCLIPART_SAMPLE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(svg.read_bytes())
    summary = build_corpus(tmp_path / "out", min_pins=5, source=tmp_path / "src", workers=1)
    assert summary.skipped == {"XML parse error": 1}
    assert (summary.users, summary.pins) == (4, 20)
    with pytest.raises(DataError, match="no creator has 6 or more"):  # each has exactly five
        build_corpus(tmp_path / "out6", min_pins=6, source=tmp_path / "src", workers=1)


_XXE = b"""<?xml version="1.0"?>
<!DOCTYPE svg [<!ENTITY secret SYSTEM "file://%s">]>
<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><title>&secret;</title></svg>"""

_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b']><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><text>&lol9;</text></svg>'
)


_OPENED: list[str] = []
sys.addaudithook(lambda event, args: _OPENED.append(str(args[0])) if event == "open" else None)


def test_external_entity_is_refused_without_reading_the_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    data = _XXE % str(secret).encode()
    _OPENED.clear()
    for parse in (read_metadata, rasterise):
        with pytest.raises(SvgError, match="refused DTD"):
            parse(data)
    assert not [path for path in _OPENED if "secret" in path]


_FLAT_EXPANSION = (
    b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY e "' + b"x" * 100_000 + b'">]>'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><text>'
    + b"&e;" * 10_000
    + b"</text></svg>"
)  # 130 kB that would expand to 1 GB


@pytest.mark.parametrize("svg", [_LAUGHS, _FLAT_EXPANSION], ids=["nested", "flat"])
def test_entity_bombs_are_refused_before_expanding(svg):
    start = time.perf_counter()
    for parse in (read_metadata, rasterise):
        with pytest.raises(SvgError, match="refused DTD"):
            parse(svg)
    assert time.perf_counter() - start < 1.0  # expanding 1 GB would take far longer


def test_exponential_use_chain_is_refused_at_once():
    groups = "".join(
        f'<g id="g{i}"><use href="#g{i - 1}"/><use href="#g{i - 1}"/></g>' for i in range(1, 40)
    )
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">'
        f'<g id="g0"><rect width="1" height="1"/></g>{groups}</svg>'
    ).encode()
    start = time.perf_counter()
    with pytest.raises(SvgError, match="too complex"):
        rasterise(svg)
    assert time.perf_counter() - start < 1.0


def test_oversized_or_nested_data_urls_are_left_out():
    import base64
    import io
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(buffer, format="PNG")
    huge = bytearray(buffer.getvalue())  # a real PNG header claiming 30,000 x 30,000 pixels
    huge[16:24] = (30_000).to_bytes(4, "big") * 2
    huge[29:33] = zlib.crc32(bytes(huge[12:29])).to_bytes(4, "big")
    nested = b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>'
    for payload, mime in ((bytes(huge), "image/png"), (nested, "image/svg+xml")):
        url = f"data:{mime};base64,{base64.b64encode(payload).decode()}"
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
            f' width="10" height="10"><image xlink:href="{url}" width="10" height="10"/></svg>'
        ).encode()
        assert rasterise(svg, max_side=10).getpixel((5, 5)) == (255, 255, 255)


def test_small_inline_bitmaps_still_render():
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
        f' width="10" height="10"><image xlink:href="{url}" width="10" height="10"/></svg>'
    ).encode()
    red, green, blue = rasterise(svg, max_side=10).getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60


def test_external_image_href_is_not_fetched(tmp_path):
    from PIL import Image

    photo = tmp_path / "local.png"
    Image.new("RGB", (10, 10), (255, 0, 0)).save(photo)
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
        b' width="10" height="10"><image xlink:href="file://%s" width="10" height="10"/>'
        b'<image xlink:href="http://127.0.0.1:9/x.png" width="10" height="10"/></svg>'
    ) % str(photo).encode()
    _OPENED.clear()
    image = rasterise(svg, max_side=10)
    assert image.getpixel((5, 5)) == (255, 255, 255)  # white: the red file was never read
    assert not [path for path in _OPENED if "local.png" in path]


def test_illustrator_literal_entities_are_expanded():
    svg = (
        b'<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://x/svg11.dtd"'
        b' [<!ENTITY ns_svg "http://www.w3.org/2000/svg">]>'
        b'<svg xmlns="&ns_svg;" width="20" height="10"><metadata/></svg>'
    )
    assert rasterise(svg, max_side=40).size == (40, 20)
