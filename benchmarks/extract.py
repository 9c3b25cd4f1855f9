"""Image feature extraction speed: end to end (read + decode + preprocess + forward + cache)
against the bare forward pass on pre-decoded tensors, side by side in one run.

    python benchmarks/extract.py [--data MANIFEST] [--images 400] [--batch-sizes 1,4,8,16,32]

Without --data it renders synthetic 256 px PNGs (real decoding work, not real content).
Goals (issue 3): bare forward of lite0 >= 150 images/s at its best batch size; end to end
>= 90% of bare forward. Prints a table and, with --json, writes the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pinid.data import load_dataset
from pinid.features.efficientnet import build_model
from pinid.features.extract import ImageFeatureExtractor
from pinid.features.images import load_image
from pinid.features.preprocess import to_tensor
from pinid.features.specs import get_spec


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


def _bare(model, tensors: list[torch.Tensor], batch: int) -> float:
    stacked = [torch.stack(tensors[i : i + batch]) for i in range(0, len(tensors), batch)]
    with torch.inference_mode():  # the pass the extractor runs: pooled and style statistics
        model.features(stacked[0], style=True)  # warm-up
        start = time.perf_counter()
        for x in stacked:
            model.features(x, style=True)
    return len(tensors) / (time.perf_counter() - start)


def _end_to_end(name: str, paths: list[Path], batch: int) -> float:
    with tempfile.TemporaryDirectory() as cache:
        extractor = ImageFeatureExtractor(
            name, batch_size=batch, cache_root=Path(cache), progress=False
        )
        extractor.load()  # weights loaded outside the timed part, as for the bare pass
        start = time.perf_counter()
        result = extractor.extract(paths)
        elapsed = time.perf_counter() - start
    assert result.computed + result.duplicates + result.from_cache + len(result.unreadable) == len(
        paths
    )
    return len(paths) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a manifest whose images to use (default: synthetic)")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--extractor", default="efficientnet-lite0")
    parser.add_argument("--batch-sizes", default="1,4,8,16,32")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    spec = get_spec(args.extractor)

    with tempfile.TemporaryDirectory() as tmp:
        paths = _images(args, Path(tmp))
        tensors = [to_tensor(load_image(p), spec.resolution, "pad") for p in paths]
        model = build_model(args.extractor)
        rows = []
        for batch in batches:  # interleaved, so machine noise hits both columns alike
            bare = _bare(model, tensors, batch)
            e2e = _end_to_end(args.extractor, paths, batch)
            rows.append({"batch": batch, "bare_per_s": bare, "end_to_end_per_s": e2e})
            print(
                f"batch {batch:>3}: bare {bare:7.1f}/s  end to end {e2e:7.1f}/s  ({e2e / bare:.0%})"
            )
    best_bare = max(rows, key=lambda r: r["bare_per_s"])
    best_e2e = max(rows, key=lambda r: r["end_to_end_per_s"])
    summary = {
        "extractor": args.extractor,
        "images": len(paths),
        "source": args.data or "synthetic 256x200 PNG",
        "rows": rows,
        "best_bare": best_bare,
        "best_end_to_end": best_e2e,
        "ratio_best_e2e_to_best_bare": best_e2e["end_to_end_per_s"] / best_bare["bare_per_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
    }
    print(
        f"best bare forward {best_bare['bare_per_s']:.1f}/s (batch {best_bare['batch']}); "
        f"best end to end {best_e2e['end_to_end_per_s']:.1f}/s (batch {best_e2e['batch']}); "
        f"ratio {summary['ratio_best_e2e_to_best_bare']:.0%}; "
        f"peak RSS {summary['peak_rss_mb']:.0f} MB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
