"""``pinid predict``: who posted this pin? Ranked users with evidence, for one pin or many."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pinid._atomic import atomic_open
from pinid.cli._options import (
    add_cluster_options,
    add_reject_option,
    extract_on_cluster,
    on_cluster,
)
from pinid.errors import DataError, PinidError

HELP = "rank the users who may have posted a pin (or every pin of a dataset)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder (from train or experiment)")
    parser.add_argument("--image", help="the pin's image")
    parser.add_argument("--text", help="the pin's text")
    parser.add_argument(
        "--top",
        type=int,
        default=10,
        choices=range(1, 11),
        metavar="1..10",
        help="how many users to list (the refinement ranks 10 candidates)",
    )
    add_reject_option(parser)
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("--data", help="batch: a manifest or folder of pins to identify")
    parser.add_argument("--out", help="batch: JSON Lines file to write, one line per pin")
    add_cluster_options(parser)


def main(args: argparse.Namespace) -> int:
    from pinid.models.predictor import Predictor

    if args.data or args.out:
        if not (args.data and args.out):
            raise PinidError("batch prediction needs both --data and --out")
        return _batch(args)
    if on_cluster(args):
        raise PinidError("--scheduler and --local-workers serve batches (--data and --out)")
    if args.image is None and args.text is None:
        raise PinidError("give --image, --text or both (or --data and --out for a batch)")
    image = Path(args.image) if args.image else None
    if image is not None and not image.is_file():
        raise DataError(
            f"{image}: "
            + ("is a folder, not an image" if image.is_dir() else "image file not found")
        )
    predictor = Predictor(args.model, reject_below=args.reject_below)
    answer = predictor.identify([args.text], [image], top=args.top)[0]
    if "image_error" in answer:
        raise DataError(f"{image}: {answer['image_error']}")
    if not answer["ranking"]:
        raise DataError("nothing to identify: the text has nothing the model knows, and no image")
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    best = answer["ranking"][0]
    if answer["answer"] == "unknown":
        print(
            f"answer: unknown (top probability {best['score']:.2f} < {predictor.reject_below:.2f})"
        )
    else:
        print(f"answer: {answer['answer']} (probability {best['score']:.2f})")
    print(
        f"used: {' + '.join(answer['used'])}"
        + (f" ({answer['text_note']})" if "text_note" in answer else "")
    )
    for rank, entry in enumerate(answer["ranking"], start=1):
        evidence = entry["evidence"]
        print(
            f"{rank:>2}. {entry['user'][:40]:<40} probability {entry['score']:.3f}  "
            f"evidence {evidence['pin_id']} (similarity {evidence['similarity']:.2f}): "
            f"{evidence['text'][:60]!r}"
        )
    return 0


def _check_replaceable(out: Path) -> None:
    """An existing --out is replaced only if it is a predictions file pinid wrote: a typo must
    never overwrite a user's file."""
    if not out.is_file():
        return
    try:
        with open(out, encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, UnicodeDecodeError, ValueError):
        first = None
    if not (isinstance(first, dict) and {"pin_id", "ranking"} <= set(first)):
        raise PinidError(
            f"{out}: exists and is not a predictions file pinid wrote; choose another --out"
        )


def _batch(args: argparse.Namespace) -> int:
    from pinid.data import load_dataset
    from pinid.models.predictor import Predictor

    _check_replaceable(Path(args.out))
    dataset = load_dataset(args.data)
    predictor = Predictor(args.model, progress=True, reject_below=args.reject_below)
    images = [p.image for p in dataset.pins]
    if on_cluster(args):  # the cluster fills the cache that identify then reads
        extract_on_cluster(args, predictor.extractor, images, what="query")
    answers = predictor.identify([p.text for p in dataset.pins], images, top=args.top)
    with atomic_open(args.out, "w", encoding="utf-8") as fh:
        for pin, answer in zip(dataset.pins, answers, strict=True):
            fh.write(json.dumps({"pin_id": pin.pin_id, **answer}, ensure_ascii=False) + "\n")
    unreadable = sum("image_error" in a for a in answers)
    unknown = sum(a.get("answer") == "unknown" for a in answers)
    print(
        f"{len(answers)} pins identified -> {args.out} ({unreadable} with unreadable image"
        + (f", {unknown} answered unknown" if predictor.reject_below is not None else "")
        + ")"
    )
    return 0
