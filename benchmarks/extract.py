"""Image feature extraction speed of each CNN engine, side by side in one run: end to end (read +
decode + preprocess + forward + cache write) and the bare forward pass on pre-decoded tensors.

    python benchmarks/extract.py --data pinid-demo/corpus/manifest.jsonl [--images 400]
        [--batch-sizes 1,4,8,16,32] [--rounds 2] [--json OUT]

Without --data it renders synthetic 256 px PNGs (real decoding work, not real content). Every
cell is the best of ``--rounds`` (the machine is shared; noise only ever slows a run), cells
interleaved so noise hits every engine alike. ``torch`` is PyTorch eager at its best batch
size; ``pinid`` is what pinid runs by default (its default engine and batch size).
torch is imported by pinid only, which first sets its allocator up (``pinid.features``).
``cnn_busy`` is the share of an end-to-end run's wall time spent in the forward pass: decoding
keeps up when it stays near the bare pass's share of the work. ``agreement`` compares each
image's features from the default engine with torch's. Goals (issue 20): pinid end to end
>= 250 images/s and >= 2.5 x torch's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

from pinid.data import load_dataset
from pinid.features import DEFAULT_BATCH_SIZE, DEFAULT_ENGINE, ENGINES
from pinid.features.engines import PRECISION
from pinid.features.extract import ImageFeatureExtractor
from pinid.features.images import load_image
from pinid.features.preprocess import to_tensor


def _images(args, folder: Path) -> list[Path]:
    if args.data:  # distinct images only: a repeated image is computed once, which would flatter
        unique: dict[str, Path] = {}
        for pin in load_dataset(args.data).pins:
            unique.setdefault(hashlib.sha256(pin.image.read_bytes()).hexdigest(), pin.image)
        return list(unique.values())[: args.images]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.images):
        base = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((256, 200), Image.BILINEAR)
        paths.append(folder / f"{i}.png")
        img.save(paths[-1])
    return paths


class _Timed:
    """An engine that adds up the time spent in it."""

    def __init__(self, engine) -> None:
        self.engine, self.seconds = engine, 0.0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.engine(batch)
        finally:
            self.seconds += time.perf_counter() - start


def _extractor(engine: str, batch: int, root: Path) -> ImageFeatureExtractor:
    """A loaded extractor on an empty feature cache (the exported graph stays in ``root``)."""
    shutil.rmtree(root / "features", ignore_errors=True)
    extractor = ImageFeatureExtractor(
        batch_size=batch, cache_root=root, progress=False, engine=engine
    )
    return extractor.load()  # the CNN loads outside the timed part


def _bare(extractor: ImageFeatureExtractor, batches: list[np.ndarray]) -> float:
    extractor._model(batches[0])  # warm-up
    start = time.perf_counter()
    for x in batches:
        extractor._model(x)
    return sum(len(x) for x in batches) / (time.perf_counter() - start)


def _end_to_end(
    extractor: ImageFeatureExtractor, paths: list[Path]
) -> tuple[float, float, np.ndarray]:
    timed = extractor.__dict__["_model"] = _Timed(extractor._model)
    start = time.perf_counter()
    result = extractor.extract(paths)
    elapsed = time.perf_counter() - start
    assert result.readable.all() and result.computed + result.duplicates == len(paths)
    return len(paths) / elapsed, timed.seconds / elapsed, result.features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a manifest whose images to use (default: synthetic)")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--extractor", default="efficientnet-lite0")
    parser.add_argument("--batch-sizes", default="1,4,8,16,32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    sizes = sorted({int(b) for b in args.batch_sizes.split(",")} | {DEFAULT_BATCH_SIZE})

    cells: dict[tuple[str, int], dict] = {}
    features: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cache"
        paths = _images(args, Path(tmp))
        extractor = _extractor(ENGINES[0], 1, root)
        tensors = [to_tensor(load_image(p), extractor.spec.resolution, "pad") for p in paths]
        for _ in range(args.rounds):
            for batch in sizes:
                stacked = [np.stack(tensors[i : i + batch]) for i in range(0, len(tensors), batch)]
                for engine in ENGINES:
                    bare = _bare(_extractor(engine, batch, root), stacked)
                    e2e, busy, features[engine] = _end_to_end(
                        _extractor(engine, batch, root), paths
                    )
                    cell = cells.setdefault((engine, batch), {"bare": 0.0, "e2e": 0.0})
                    cell["bare"], cell["e2e"] = max(cell["bare"], bare), max(cell["e2e"], e2e)
                    cell["cnn_busy"] = busy if cell["e2e"] == e2e else cell["cnn_busy"]
                    print(
                        f"{engine:>5} batch {batch:>3}: bare {bare:6.1f}/s  end to end "
                        f"{e2e:6.1f}/s  CNN busy {busy:.0%}",
                        flush=True,
                    )

    rows = [{"engine": e, "batch": b, "bare_img_s": c["bare"], "e2e_img_s": c["e2e"],
             "cnn_busy": c["cnn_busy"]} for (e, b), c in cells.items()]  # fmt: skip
    torch_best = max((r for r in rows if r["engine"] == "torch"), key=lambda r: r["e2e_img_s"])
    default = next(
        r for r in rows if (r["engine"], r["batch"]) == (DEFAULT_ENGINE, DEFAULT_BATCH_SIZE)
    )
    a, b = features["torch"].astype(np.float64), features[DEFAULT_ENGINE].astype(np.float64)
    cosines = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    summary = {
        "torch": {k: torch_best[k] for k in ("bare_img_s", "e2e_img_s", "batch", "cnn_busy")},
        "pinid": {
            **{k: default[k] for k in ("bare_img_s", "e2e_img_s", "batch", "cnn_busy")},
            "engine": DEFAULT_ENGINE,
            "precision": PRECISION,
        },
        "agreement": {"min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean())},
        "speedup_e2e": default["e2e_img_s"] / torch_best["e2e_img_s"],
        "extractor": args.extractor,
        "images": len(paths),
        "source": args.data or "synthetic 256x200 PNG",
        "rounds": args.rounds,
        "rows": rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {version('torch')}, "
        f"onnxruntime {version('onnxruntime')}",
    }
    print(
        f"torch (batch {torch_best['batch']}): bare {torch_best['bare_img_s']:.1f}/s, end to end "
        f"{torch_best['e2e_img_s']:.1f}/s; pinid ({DEFAULT_ENGINE} {PRECISION}, batch "
        f"{default['batch']}): bare {default['bare_img_s']:.1f}/s, end to end "
        f"{default['e2e_img_s']:.1f}/s ({summary['speedup_e2e']:.2f} x); cosine to torch min "
        f"{cosines.min():.6f} mean {cosines.mean():.6f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
