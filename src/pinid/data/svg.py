"""Safe SVG handling: metadata with defusedxml, rasterising with CairoSVG that may fetch nothing.

SVG is XML that can name local files and URLs (entities, ``<image href>``, ``<use>``); pinid
refuses DTDs and entities outright and gives the renderer a fetcher that refuses every URL.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import cairosvg
import cairosvg.surface
import cairosvg.url
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET
from PIL import Image

MAX_SVG_BYTES = 8 * 1024 * 1024
"""Largest SVG pinid reads (openclipart's largest is 1.7 MB)."""

RENDER_SIDE = 256
"""Longest side of a rendered SVG: above every CNN input size pinid uses (224-260)."""

_NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "cc": "http://web.resource.org/cc/",
    "cc2": "http://creativecommons.org/ns#",
}


class SvgError(ValueError):
    """An SVG pinid refuses or cannot read; ``reason`` is a short label for summaries.

    ``oversize`` marks refusals for size (bytes, entity expansion, element count): bombs.
    ``NOT_SVG`` reasons mean the bytes are not an SVG document at all.
    """

    def __init__(self, reason: str, detail: str = "", *, oversize: bool = False) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.oversize = oversize


NOT_SVG = ("XML parse error", "not SVG")


@dataclass(frozen=True)
class SvgMetadata:
    title: str = ""
    description: str = ""
    keywords: tuple[str, ...] = field(default_factory=tuple)
    creator: str = ""


def _check_size(data: bytes) -> None:
    if len(data) > MAX_SVG_BYTES:
        raise SvgError("too large", f"{len(data)} bytes > {MAX_SVG_BYTES}", oversize=True)


_DOCTYPE = re.compile(
    rb"<!DOCTYPE\s+[\w:.-]+"
    rb"(?:\s+(?:PUBLIC\s+(?:\"[^\"]*\"|'[^']*')\s+|SYSTEM\s+)(?:\"[^\"]*\"|'[^']*'))?"
    rb"\s*(?:\[(?P<subset>.*?)\]\s*)?>",
    re.DOTALL,
)
_LITERAL_ENTITY = re.compile(
    rb"<!ENTITY\s+(?P<name>[\w.-]+)\s+(?:\"(?P<dq>[^\"&%<]*)\"|'(?P<sq>[^'&%<]*)')\s*>"
)
_XMLNS_ATTLIST = re.compile(
    rb"<!ATTLIST\s+svg\s+(?P<attr>xmlns:[\w.-]+)\s+CDATA\s+#FIXED\s+\"(?P<uri>[^\"&%<]*)\"\s*>"
)
_COMMENT = re.compile(rb"<!--.*?-->", re.DOTALL)


def _without_doctype(data: bytes) -> bytes:
    """Remove a DOCTYPE, keeping only what is inert: literal entities and xmlns defaults.

    An external DTD reference is dropped unread. Any other declaration -- an entity that
    refers to another entity (billion laughs), a SYSTEM/parameter entity (local file or
    URL) -- refuses the file, so the XML parser below never sees a DTD at all.
    """
    start = data.find(b"<!DOCTYPE", 0, 4096)
    if start < 0:
        return data
    match = _DOCTYPE.match(data, start)
    if match is None:
        raise SvgError("refused DTD", "DOCTYPE pinid cannot vet")
    entities: dict[bytes, bytes] = {}
    subset = _COMMENT.sub(b"", match.group("subset") or b"")
    for decl in _LITERAL_ENTITY.finditer(subset):
        entities[decl.group("name")] = (
            decl.group("dq") if decl.group("dq") is not None else decl.group("sq")
        )
    namespaces = {m.group("attr"): m.group("uri") for m in _XMLNS_ATTLIST.finditer(subset)}
    if _XMLNS_ATTLIST.sub(b"", _LITERAL_ENTITY.sub(b"", subset)).strip():
        raise SvgError("refused DTD", "declarations other than literal entities and xmlns defaults")
    body = data[: match.start()] + data[match.end() :]
    root = re.search(rb"<svg\b[^>]*>", body)
    missing = [
        a + b'="' + u + b'"' for a, u in namespaces.items() if root and a + b"=" not in root[0]
    ]
    if missing:  # the DTD's #FIXED namespace defaults, made explicit on the root element
        at = root.start() + 4
        body = body[:at] + b" " + b" ".join(missing) + body[at:]
    if entities:
        pattern = re.compile(rb"&(" + b"|".join(re.escape(n) for n in entities) + rb");")
        expanded = len(body) + sum(len(entities[m[1]]) - len(m[0]) for m in pattern.finditer(body))
        if expanded > MAX_SVG_BYTES:  # measured before expanding: the bytes never exist
            raise SvgError(
                "refused DTD", f"entities would expand to {expanded} bytes", oversize=True
            )
        body = pattern.sub(lambda m: entities[m.group(1)], body)
    return body


def _parse(data: bytes):
    _check_size(data)
    try:
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise SvgError("refused XML", type(exc).__name__) from None
    except SafeET.ParseError as exc:
        raise SvgError("XML parse error", str(exc)) from None


def sanitise(data: bytes) -> bytes:
    """The SVG with its DOCTYPE vetted and removed; raises :class:`SvgError` when refused."""
    _check_size(data)
    return _without_doctype(data)


def _text(node) -> str:
    return " ".join("".join(node.itertext()).split()) if node is not None else ""


def read_metadata(data: bytes) -> SvgMetadata:
    """The RDF metadata: ``dc:title``, ``dc:description``, ``dc:subject`` keywords, creator."""
    root = _parse(sanitise(data))
    for cc in ("cc", "cc2"):
        work = root.find(f".//rdf:RDF/{cc}:Work", _NS)
        if work is not None:
            break
    else:
        return SvgMetadata()
    subject = work.find("dc:subject", _NS)
    keywords = tuple(
        _text(li) for li in (subject.iterfind(".//rdf:li", _NS) if subject is not None else ())
    )
    creator = work.find("dc:creator", _NS)
    creator_name = ""
    if creator is not None:
        agent_title = creator.find(".//dc:title", _NS)
        creator_name = _text(agent_title) if agent_title is not None else _text(creator)
    return SvgMetadata(
        title=_text(work.find("dc:title", _NS)),
        description=_text(work.find("dc:description", _NS)),
        keywords=tuple(k for k in keywords if k),
        creator=creator_name,
    )


MAX_EMBEDDED_PIXELS = 16_000_000
_EMPTY_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>'


def _local_only_fetch(url: str, resource_type: str | None = None) -> bytes:
    """What CairoSVG may load: inline ``data:`` bitmaps of a sane size, nothing else.

    File and network URLs, nested SVG or gzip payloads and oversized bitmaps all become an
    empty image, so a clip renders without them and nothing outside the file is read.
    """
    if not url.startswith("data:"):
        return _EMPTY_SVG
    payload = cairosvg.url.fetch(url, resource_type)
    try:
        with Image.open(io.BytesIO(payload), formats=["PNG", "JPEG", "GIF", "WEBP"]) as img:
            if img.width * img.height <= MAX_EMBEDDED_PIXELS:
                return payload
    except Exception:  # not a bitmap Pillow accepts (SVG, gzip, garbage): leave it out
        pass
    return _EMPTY_SVG


MAX_RENDERED_NODES = 200_000
"""Elements CairoSVG would draw once every ``<use>`` is expanded (openclipart: well below)."""


def _check_use_expansion(root) -> None:
    """Refuse ``<use>`` chains whose expansion is exponential (each copy copying the last)."""
    by_id = {el.get("id"): el for el in root.iter() if el.get("id")}
    cost: dict[int, int] = {}

    def nodes(el) -> int:
        key = id(el)
        if key in cost:
            return cost[key]
        cost[key] = MAX_RENDERED_NODES + 1  # a cycle through this element counts as too many
        total = 1 + sum(nodes(child) for child in el)
        if el.tag.rsplit("}", 1)[-1] == "use":
            href = el.get("href") or el.get("{http://www.w3.org/1999/xlink}href") or ""
            target = by_id.get(href[1:]) if href.startswith("#") else None
            total += nodes(target) if target is not None else 0
        cost[key] = min(total, MAX_RENDERED_NODES + 1)
        return cost[key]

    try:
        total = nodes(root)
    except RecursionError:
        raise SvgError("too complex", "elements nested too deeply", oversize=True) from None
    if total > MAX_RENDERED_NODES:
        raise SvgError(
            "too complex",
            f"over {MAX_RENDERED_NODES} elements once <use> is expanded",
            oversize=True,
        )


def _render(data: bytes, **size) -> bytes:
    try:
        return cairosvg.surface.PNGSurface.convert(
            bytestring=data,
            background_color="white",
            unsafe=False,
            url_fetcher=_local_only_fetch,
            **size,
        )
    except (MemoryError, RecursionError) as exc:
        raise SvgError("render failed", type(exc).__name__) from None
    except Exception as exc:  # CairoSVG raises many unrelated types on malformed input
        raise SvgError("render failed", f"{type(exc).__name__}: {exc}"[:200]) from None


def rasterise(data: bytes, max_side: int = RENDER_SIDE) -> Image.Image:
    """Render an SVG to an RGB image on white, aspect kept, longest side ``max_side``."""
    data = sanitise(data)
    root = _parse(data)
    if root.tag.rsplit("}", 1)[-1] != "svg":
        raise SvgError("not SVG", f"the root element is <{root.tag}>")
    _check_use_expansion(root)
    size = _intrinsic_size(root)
    if size is None:  # no usable viewBox/width/height: let CairoSVG size it, then scale
        with Image.open(io.BytesIO(_render(data)), formats=["PNG"]) as probe:
            size = probe.size
    scale = max_side / max(size)
    png = _render(
        data,
        output_width=max(1, round(size[0] * scale)),
        output_height=max(1, round(size[1] * scale)),
    )
    with Image.open(io.BytesIO(png), formats=["PNG"]) as img:
        return img.convert("RGB")


_UNITS = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}
_LENGTH = re.compile(r"^\s*([0-9.eE+-]+)\s*([a-z]*)\s*$")


def _length(value: str | None) -> float | None:
    match = _LENGTH.match(value or "")
    if not match or match.group(2) not in _UNITS:
        return None
    try:
        number = float(match.group(1)) * _UNITS[match.group(2)]
    except ValueError:
        return None
    return number if 0 < number < 1e6 else None


def _intrinsic_size(root) -> tuple[float, float] | None:
    """Width and height from width/height attributes, else the viewBox; None when neither helps."""
    w, h = _length(root.get("width")), _length(root.get("height"))
    if w and h:
        return w, h
    view_box = (root.get("viewBox") or "").replace(",", " ").split()
    if len(view_box) == 4:
        w, h = _length(view_box[2]), _length(view_box[3])
        if w and h:
            return w, h
    return None
