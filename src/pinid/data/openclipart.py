"""The embedded default corpus: Debian's openclipart-svg turned into pins.

Each clip is a pin: user = the creator in its RDF metadata; text = title, description and
keywords; board = its top-level category folder; image = the SVG rendered to PNG. The file name
never becomes text: many contain the author's name and would leak the label.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pinid._atomic import atomic_open, atomic_write_text, check_output_folder
from pinid.data.svg import (
    MAX_SVG_BYTES,
    RENDER_SIDE,
    SvgError,
    SvgMetadata,
    rasterise,
    read_metadata,
)
from pinid.errors import DataError
from pinid.paths import cache_dir

SYSTEM_SOURCE = Path("/usr/share/openclipart/svg")
PACKAGE = "openclipart-svg"
TEXT_FIELDS = ("title", "description", "keywords")


@dataclass(frozen=True)
class Clip:
    relative: str
    sha256: str
    board: str
    metadata: SvgMetadata

    def text(self, fields: Sequence[str]) -> str:
        parts = {
            "title": self.metadata.title,
            "description": self.metadata.description,
            "keywords": " ".join(self.metadata.keywords),
        }
        return " ".join(parts[f] for f in fields if parts[f]).strip()


@dataclass
class CorpusSummary:
    users: int
    pins: int
    pins_per_user: dict[str, float]
    median_words_per_pin: float
    skipped: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def lines(self) -> list[str]:
        ppu = self.pins_per_user
        out = [
            f"openclipart corpus from {self.source}",
            f"  users: {self.users}",
            f"  pins: {self.pins}",
            f"  pins per user: min {ppu['min']:g} / median {ppu['median']:g} / max {ppu['max']:g}",
            f"  median words per pin: {self.median_words_per_pin:g}",
        ]
        if self.skipped:
            out.append("  skipped files by reason:")
            out += [f"    {reason}: {n}" for reason, n in sorted(self.skipped.items())]
        return out


def obtain_source(cache: Path | None = None) -> Path:
    """The openclipart SVG folder: installed, already unpacked in the cache, or fetched now."""
    if SYSTEM_SOURCE.is_dir():
        return SYSTEM_SOURCE
    cache = cache or cache_dir()
    unpacked = cache / "openclipart"
    svg_dir = unpacked / "usr" / "share" / "openclipart" / "svg"
    if svg_dir.is_dir():
        return svg_dir
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise DataError(
            f"openclipart not found at {SYSTEM_SOURCE} and apt-get/dpkg are unavailable to fetch "
            f"{PACKAGE}; install it or pass --source DIR"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".openclipart-") as tmp:
        deb = _apt_download(Path(tmp))
        staged = Path(tmp) / "unpacked"
        _run(["dpkg", "-x", str(deb), str(staged)], "dpkg -x")
        os.replace(staged, unpacked)  # appears whole or not at all
    return svg_dir


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"{what} failed while obtaining {PACKAGE}: {exc}") from None


def _apt_download(folder: Path) -> Path:
    result = _run(["apt-get", "download", PACKAGE], "apt-get download", cwd=folder)
    if result.returncode != 0:  # a fresh machine may have no package lists yet
        _run(["apt-get", "update"], "apt-get update")
        result = _run(["apt-get", "download", PACKAGE], "apt-get download", cwd=folder)
    debs = sorted(folder.glob("*.deb"))
    if result.returncode != 0 or not debs:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(
            f"could not fetch {PACKAGE} with apt-get download ({last}); "
            "install it or pass --source DIR"
        )
    return debs[0]


def scan(source: Path) -> tuple[list[Clip], Counter[str]]:
    """Every readable, distinct clip under ``source`` with a creator, and skips by reason.

    Symlinks and byte-identical copies are the same clip filed twice; keeping them would put
    one image in both train and test.
    """
    clips: list[Clip] = []
    skipped: Counter[str] = Counter()
    seen: set[str] = set()
    for path in tqdm(
        sorted(source.rglob("*.svg")), desc="reading SVG metadata", unit="file", disable=None
    ):
        if path.is_symlink():
            skipped["duplicate (symlink)"] += 1
            continue
        if path.stat().st_size > MAX_SVG_BYTES:
            skipped["too large"] += 1
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            skipped["duplicate (same bytes)"] += 1
            continue
        seen.add(digest)
        try:
            metadata = read_metadata(data)
        except SvgError as exc:
            skipped[exc.reason] += 1
            continue
        if not metadata.creator:
            skipped["no creator"] += 1
            continue
        relative = path.relative_to(source)
        board = relative.parts[0] if len(relative.parts) > 1 else "unsorted"
        clips.append(Clip(relative.as_posix(), digest, board, metadata))
    return clips, skipped


def select(clips: list[Clip], min_pins: int, max_pins: int, seed: int) -> list[Clip]:
    """Creators with at least ``min_pins`` clips, at most ``max_pins`` sampled from each."""
    by_creator: dict[str, list[Clip]] = {}
    for clip in clips:
        by_creator.setdefault(clip.metadata.creator, []).append(clip)
    chosen: list[Clip] = []
    for creator in sorted(by_creator):
        own = sorted(by_creator[creator], key=lambda c: c.sha256)
        if len(own) < min_pins:
            continue
        if len(own) > max_pins:
            digest = int.from_bytes(hashlib.sha256(creator.encode()).digest()[:8], "little")
            rng = np.random.default_rng(np.random.SeedSequence([seed, digest]))
            own = [own[i] for i in sorted(rng.choice(len(own), max_pins, replace=False))]
        chosen += own
    return chosen


def _render_one(job: tuple[str, str]) -> str | None:
    """Render one SVG to PNG (atomically); return a skip reason or None."""
    svg_path, png_path = job
    try:
        image = rasterise(Path(svg_path).read_bytes(), RENDER_SIDE)
    except SvgError as exc:
        return exc.reason
    with atomic_open(png_path, "wb") as fh:
        image.save(fh, format="PNG", optimize=False)
    return None


def _distinct_renders(
    clips: list[Clip], images: Path, png_name: dict[str, str], skipped: Counter[str]
) -> list[Clip]:
    """Clips whose render shows something and differs from every earlier one.

    Different SVGs can render to the same picture (CairoSVG draws some gradient patterns as
    plain white): as with duplicate files, one picture must not sit in train and test.
    """
    seen: set[str] = set()
    kept = []
    for clip in clips:
        data = (images / png_name[clip.sha256]).read_bytes()
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            if img.convert("L").getextrema() == (255, 255):
                skipped["blank render"] += 1
                continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            skipped["duplicate (same render)"] += 1
            continue
        seen.add(digest)
        kept.append(clip)
    return kept


def build_corpus(
    out: str | Path,
    *,
    min_pins: int = 10,
    max_pins: int = 150,
    text_fields: Sequence[str] = TEXT_FIELDS,
    seed: int = 0,
    source: str | Path | None = None,
    workers: int | None = None,
) -> CorpusSummary:
    """Write ``out/manifest.jsonl`` and ``out/images/``; reuse images rendered by earlier runs."""
    unknown = [f for f in text_fields if f not in TEXT_FIELDS]
    if unknown or not text_fields:
        raise DataError(f"--text-fields must be a subset of {','.join(TEXT_FIELDS)}")
    if min_pins < 3 or max_pins < min_pins:
        raise DataError("need 3 <= --min-pins <= --max-pins")
    source_dir = Path(source) if source else obtain_source()
    if not source_dir.is_dir():
        raise DataError(f"{source_dir}: openclipart source folder not found")
    out = check_output_folder(out, "manifest.jsonl", "images")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)

    clips, skipped = scan(source_dir)
    chosen = select(clips, min_pins, max_pins, seed)
    # The render size is in the name, so a change of size can never reuse a stale render.
    png_name = {c.sha256: f"{c.sha256[:20]}-{RENDER_SIDE}.png" for c in chosen}
    jobs = [
        (str(source_dir / c.relative), str(images / png_name[c.sha256]))
        for c in chosen
        if not (images / png_name[c.sha256]).exists()
    ]
    failed: dict[str, str] = {}
    if jobs:
        with ProcessPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
            results = pool.map(_render_one, jobs, chunksize=8)
            for (svg_path, _), reason in tqdm(
                zip(jobs, results, strict=True),
                total=len(jobs),
                desc="rendering SVGs",
                unit="img",
                disable=None,
            ):
                if reason is not None:
                    failed[svg_path] = reason
                    skipped[reason] += 1
    rendered = _distinct_renders(
        [c for c in chosen if str(source_dir / c.relative) not in failed],
        images,
        png_name,
        skipped,
    )
    counts = Counter(c.metadata.creator for c in rendered)
    kept = [c for c in rendered if counts[c.metadata.creator] >= min_pins]
    if len(kept) < len(rendered):
        skipped["creator below --min-pins after dropped renders"] += len(rendered) - len(kept)
    if not kept:
        raise DataError(f"{source_dir}: no creator has {min_pins} or more usable clips")

    rows = [
        {
            "pin_id": f"oc-{c.sha256[:16]}",
            "user": c.metadata.creator,
            "text": c.text(text_fields),
            "image": f"images/{png_name[c.sha256]}",
            "board": c.board,
        }
        for c in kept
    ]
    with atomic_open(out / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    per_user = sorted(Counter(r["user"] for r in rows).values())
    summary = CorpusSummary(
        users=len(per_user),
        pins=len(rows),
        pins_per_user={
            "min": per_user[0],
            "median": float(statistics.median(per_user)),
            "max": per_user[-1],
        },
        median_words_per_pin=float(statistics.median(len(r["text"].split()) for r in rows)),
        skipped=dict(skipped),
        source=str(source_dir),
    )
    atomic_write_text(out / "summary.json", json.dumps(summary.__dict__, indent=2) + "\n")
    return summary
