"""Image feature throughput and training time in-process and on local Dask clusters of 1 and 2
worker processes.

    python benchmarks/scaleout.py [--data MANIFEST [--model MODEL_DIR]] [--images 1000]
                                  [--only features|training]

Every configuration computes every image: each gets a fresh cache folder. Workers import torch
before the clock starts (as the in-process extractor loads its model first); the cluster's
start-up is timed apart. Each row also says whether its features are bitwise those of the
in-process run and, with --model, how many of the pins' rankings (text + image) are identical.
Without --data it renders synthetic 256 px PNGs (real decoding work, not real content).

With --data, training is timed too: C tuned on the seed-0 split, then the final model fitted on
every pin (as ``pinid train`` does, without the rejection threshold's refits), its fits in-process
or as tasks of the cluster; the image features are computed before the clock starts, and each
row says how far its model's arrays are from the in-process one's. With --json, writes the
figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pinid.api import Model
from pinid.data import Pin, load_dataset, make_split
from pinid.features.dataset import PreparedData, prepare
from pinid.features.distributed import connect, extract_on_cluster
from pinid.features.extract import FeatureResult, ImageFeatureExtractor
from pinid.models.distributed import OnCluster
from pinid.models.io import _arrays
from pinid.models.selection import tune_C
from pinid.models.training import fit_identifier

CONFIGURATIONS = (  # (label, local workers or 0 for in-process, torch threads per worker)
    ("in-process", 0, None),
    ("1 local worker", 1, None),
    ("2 local workers", 2, None),
    ("2 local workers, 1 thread each", 2, 1),
)


def _pins(args, folder: Path) -> tuple[list[Path], list[str]]:
    """Images and their pins' texts."""
    if args.data:  # distinct images only: a repeated image is computed once, which would flatter
        unique: dict[str, Pin] = {}
        for pin in load_dataset(args.data).pins:
            unique.setdefault(hashlib.sha256(pin.image.read_bytes()).hexdigest(), pin)
        pins = list(unique.values())[: args.images]
        return [p.image for p in pins], [p.text for p in pins]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.images):
        base = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        paths.append(folder / f"{i}.png")
        Image.fromarray(base).resize((256, 200), Image.BILINEAR).save(paths[-1])
    return paths, [""] * len(paths)


def _features(cache: Path, paths: list[Path], model: Model | None) -> FeatureResult:
    """The features just computed, read back through the cache; as wide as ``model`` needs
    (a model of pinid 0.2, or one trained with --pooled-only, has no style statistics)."""
    style = model.extractor_record.get("style", False) if model else True
    return ImageFeatureExtractor(cache_root=cache, progress=False, style=style).extract(paths)


def _rankings(model: Model | None, texts: list[str], features: FeatureResult) -> list[dict]:
    if model is None:
        return []
    answers = model.identify_features(texts, features.features, features.readable)
    return [answer.model_dump() for answer in answers]


def _order(answer: dict) -> list[str]:
    return [entry["user"] for entry in answer["candidates"]]


def _in_process(paths: list[Path], cache: Path) -> dict:
    extractor = ImageFeatureExtractor(cache_root=cache, progress=False).load()
    start = time.perf_counter()
    result = extractor.extract(paths)
    return {"seconds": time.perf_counter() - start, "computed": result.computed}


def _on_cluster(paths: list[Path], cache: Path, workers: int, threads, shard_size: int) -> dict:
    start = time.perf_counter()
    with connect(None, workers) as client:
        client.run(__import__, "pinid.features.extract")  # torch imported on every worker
        started = time.perf_counter() - start
        extractor = ImageFeatureExtractor(cache_root=cache, progress=False)
        start = time.perf_counter()
        run = extract_on_cluster(client, extractor, paths, shard_size=shard_size, threads=threads)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "computed": run.computed, "shards": run.shards, "start_s": started}


TRAINING = (("in-process", 0), ("1 local worker", 1), ("2 local workers", 2))


def _train(data: PreparedData, fits) -> tuple[float, dict, dict[str, np.ndarray]]:
    """Seconds to tune C and fit the final model, the Cs chosen and the model's arrays."""
    split = make_split(data.dataset, 0)
    start = time.perf_counter()
    train_ids, val_ids = split.ids("train"), split.ids("val")
    tuned = tune_C(data.part(train_ids), data.part(val_ids), fits=fits)
    every_pin = {p.pin_id for p in data.dataset.pins}
    final, _ = fit_identifier(data, every_pin, tuned.C, fits=fits,
                              tuned=(tuned, train_ids, val_ids))  # fmt: skip
    return time.perf_counter() - start, tuned.C, _arrays(final)


def _training_rows(manifest: str, folder: Path) -> list[dict]:
    dataset = load_dataset(manifest).drop_small_users()
    data = prepare(dataset, ImageFeatureExtractor(cache_root=folder / "cache-training"))
    rows, reference = [], None
    for label, workers in TRAINING:
        row = {"label": label, "pins": len(data.dataset.pins)}
        if workers:
            start = time.perf_counter()
            with connect(None, workers) as client:
                client.run(__import__, "pinid.models.final_model")  # imports before the clock
                row["start_s"] = time.perf_counter() - start
                row["seconds"], chosen, arrays = _train(data, OnCluster(client))
        else:
            row["seconds"], chosen, arrays = _train(data, None)
        reference = reference or (chosen, arrays)
        row["same_C"] = chosen == reference[0]
        row["max_abs_diff"] = max(
            float(np.abs(arrays[name] - reference[1][name]).max(initial=0)) for name in arrays
        )
        rows.append(row)
        start = f", cluster start {row['start_s']:.1f} s" if workers else ""
        print(
            f"training, {label:<22} {row['seconds']:6.1f} s{start}; C "
            f"{'as' if row['same_C'] else 'NOT as'} in-process, arrays within "
            f"{row['max_abs_diff']:.1e}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a manifest whose images to use (default: synthetic)")
    parser.add_argument("--model", help="with --data: also compare the pins' rankings")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=128)
    parser.add_argument("--only", choices=("features", "training"), help="one of the two")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    predictor = Model.load(args.model) if args.model else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths, texts = _pins(args, Path(tmp))
        reference = None
        for label, workers, threads in () if args.only == "training" else CONFIGURATIONS:
            cache = Path(tmp) / f"cache-{len(rows)}"
            if workers:
                row = _on_cluster(paths, cache, workers, threads, args.shard_size)
            else:
                row = _in_process(paths, cache)
            features = _features(cache, paths, predictor)
            rankings = _rankings(predictor, texts, features)
            reference = reference or (features.features, rankings)
            row.update(
                label=label,
                per_s=len(paths) / row["seconds"],
                bitwise_equal=bool(np.array_equal(features.features, reference[0])),
                max_abs_diff=float(np.abs(features.features - reference[0]).max()),
                identical_rankings=sum(
                    json.dumps(a) == json.dumps(b)
                    for a, b in zip(rankings, reference[1], strict=True)
                ),
                same_order=sum(
                    _order(a) == _order(b) for a, b in zip(rankings, reference[1], strict=True)
                ),
            )
            rows.append(row)
            start = f", cluster start {row['start_s']:.1f} s" if workers else ""
            ranked = (
                f"; rankings: {row['identical_rankings']} identical, {row['same_order']} in the "
                "same order"
                if predictor
                else ""
            )
            print(
                f"{label:<32} {row['per_s']:6.1f} images/s ({row['seconds']:.1f} s{start}); "
                f"features {'bitwise equal to' if row['bitwise_equal'] else 'differ from'} "
                f"in-process (max |diff| {row['max_abs_diff']:.1e}){ranked}",
                flush=True,
            )
        training = (
            _training_rows(args.data, Path(tmp)) if args.data and args.only != "features" else []
        )
    summary = {
        "training": training,
        "images": len(paths),
        "source": args.data or "synthetic 256x200 PNG",
        "shard_size": args.shard_size,
        "rows": rows,
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
    }
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
