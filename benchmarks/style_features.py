"""Do style statistics from the same forward pass identify creators better than the pooled
ImageNet features alone? Image view only, side by side on one split.

    python benchmarks/style_features.py --data pinid-demo/corpus/manifest.jsonl \
        [--split pinid-demo/split.json] [--json OUT]

Every pin's image goes once through EfficientNet-Lite0 (as pinid's extractor prepares it);
from that one pass it keeps the pooled head features (what pinid's image view uses today), the
per-channel mean and standard deviation of the feature maps after each stage of the network
(stride 4, 8, 16 and 32: line weight, texture and shading, not only the subject), the standard
deviation of the head's maps, and colour statistics of the input (RGB mean and standard
deviation, a 12-bin hue histogram weighted by saturation, share of near-white pixels). Each
variant is the image view's model (L2-normalised blocks, logistic regression, C by validation
accuracy on the grid pinid uses), fitted on train, scored on test: accuracy and macro-F1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import normalize

from pinid.data import load_dataset, make_split
from pinid.data.split import split_for
from pinid.features.efficientnet import build_model
from pinid.features.images import load_image, to_rgb
from pinid.features.preprocess import to_tensor
from pinid.models.modality import make_image_model
from pinid.models.selection import C_GRID

HUE_BINS = 12


def _colour(img: Image.Image) -> np.ndarray:
    rgb = np.asarray(img, dtype=np.float32).reshape(-1, 3) / 255.0
    hsv = np.asarray(img.convert("HSV"), dtype=np.float32).reshape(-1, 3) / 255.0
    hue = np.histogram(hsv[:, 0], bins=HUE_BINS, range=(0, 1), weights=hsv[:, 1])[0]
    white = (rgb.min(axis=1) > 0.95).mean()
    return np.concatenate([rgb.mean(0), rgb.std(0), hue / max(len(rgb), 1), [white]])


@torch.inference_mode()
def _one_pass(net, batch: torch.Tensor) -> dict[str, np.ndarray]:
    """The pooled features and every style statistic, from one forward pass."""
    x = F.relu6(net._bn0(net._conv_stem(batch)))
    stats = []
    for i, block in enumerate(net._blocks):
        x = block(x)
        if i in net._style_ends:  # the blocks ending the stride-4, 8, 16 and 32 stages
            stats += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
    head = F.relu6(net._bn1(net._conv_head(x)))
    return {
        "pooled": head.mean(dim=(2, 3)).numpy(),
        "stages": torch.cat(stats, dim=1).numpy(),
        "head_std": head.std(dim=(2, 3)).numpy(),
    }


def extract(paths: list[Path], batch_size: int = 16) -> dict[str, np.ndarray]:
    net = build_model("efficientnet-lite0", fold_bn=True, channels_last=False).eval()
    parts: dict[str, list[np.ndarray]] = {"colour": []}
    for start in range(0, len(paths), batch_size):
        images = [to_rgb(load_image(p)) for p in paths[start : start + batch_size]]
        parts["colour"] += [_colour(img) for img in images]
        out = _one_pass(net, torch.stack([to_tensor(img, 224, "pad") for img in images]))
        for name, values in out.items():
            parts.setdefault(name, []).append(values)
    return {k: np.vstack(v) for k, v in parts.items()}


def _block(features: np.ndarray) -> np.ndarray:
    """Standardised then L2-normalised: blocks of different scales weigh alike once joined."""
    z = (features - features.mean(0)) / (features.std(0) + 1e-6)
    return normalize(z)


def _image_model(C: float):
    """pinid's image view after its block step (the blocks are joined here, by ``_block``)."""
    return make_image_model(C)[1:]


def evaluate(X: np.ndarray, y: np.ndarray, parts: dict[str, np.ndarray]) -> dict:
    best = None
    for C in C_GRID:
        model = _image_model(C).fit(X[parts["train"]], y[parts["train"]])
        val = accuracy_score(y[parts["val"]], model.predict(X[parts["val"]]))
        if best is None or val > best[0]:
            best = (val, C)
    model = _image_model(best[1]).fit(X[parts["train"]], y[parts["train"]])
    predicted = model.predict(X[parts["test"]])
    truth = y[parts["test"]]
    return {
        "C": best[1],
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", help="a split file (default: seed 0)")
    parser.add_argument("--json")
    parser.add_argument("--save", help="also write every block of every pin to this .npz")
    args = parser.parse_args()
    dataset = load_dataset(args.data).drop_small_users()
    split = split_for(dataset, Path(args.split)) if args.split else make_split(dataset, 0)
    pins = list(dataset.pins)
    started = time.perf_counter()
    blocks = extract([p.image for p in pins])
    seconds = time.perf_counter() - started
    if args.save:
        np.savez(args.save, pin_id=[p.pin_id for p in pins], **blocks)
    y = np.array([p.user for p in pins])
    ids = [p.pin_id for p in pins]
    parts = {part: np.isin(ids, list(split.ids(part))) for part in ("train", "val", "test")}
    variants = {
        "pooled (the paper's)": ["pooled"],
        "pooled + head std": ["pooled", "head_std"],
        "pooled + stage mean/std": ["pooled", "stages"],
        "pooled + colour": ["pooled", "colour"],
        "pooled + stages + colour": ["pooled", "stages", "colour"],
        "all": ["pooled", "head_std", "stages", "colour"],
    }
    results = {}
    for name, names in variants.items():
        X = np.hstack([_block(blocks[n]) for n in names]) if len(names) > 1 else blocks["pooled"]
        results[name] = {"dims": int(X.shape[1]), **evaluate(X, y, parts)}
        r = results[name]
        print(f"{name:28s} {r['dims']:5d} d  C {r['C']:<6g} accuracy {100 * r['accuracy']:.1f}  "
              f"macro-F1 {100 * r['macro_f1']:.1f}")  # fmt: skip
    print(f"{len(pins)} pins, {len(set(y))} users; one pass for every block: {seconds:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"data": args.data, "results": results}, indent=2))


if __name__ == "__main__":
    main()
