"""``pinid predict``: who posted this pin? Ranked users with evidence, for one pin or many."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from pinid._atomic import atomic_open
from pinid.cli._options import (
    add_cluster_options,
    add_reject_option,
    extract_on_cluster,
    on_cluster,
)
from pinid.errors import PinidError

if TYPE_CHECKING:
    from pinid.models.answer import Answer

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
    from pinid.api import Model

    if args.data or args.out:
        if not (args.data and args.out):
            raise PinidError("batch prediction needs both --data and --out")
        return _batch(args)
    if on_cluster(args):
        raise PinidError("--scheduler and --local-workers serve batches (--data and --out)")
    if args.image is None and args.text is None:
        raise PinidError("give --image, --text or both (or --data and --out for a batch)")
    model = Model.load(args.model, reject_below=args.reject_below)
    answer = model.identify(args.text, args.image, top=args.top)
    if args.json:
        print(answer.model_dump_json(indent=2))
        return 0
    print(format_answer(answer))
    return 0


def format_answer(answer: Answer) -> str:
    """The answer, what was used and the ranked candidates with their evidence."""
    best = answer.candidates[0]
    if answer.user == "unknown":
        lines = [
            f"answer: unknown (top probability {best.probability:.2f} < {answer.reject_below:.2f})"
        ]
    else:
        lines = [f"answer: {answer.user} (probability {best.probability:.2f})"]
    note = f" ({answer.text_note})" if answer.text_note else ""
    lines.append(f"used: {' + '.join(answer.used)}{note}")
    for rank, candidate in enumerate(answer.candidates, start=1):
        evidence = candidate.evidence
        lines.append(
            f"{rank:>2}. {candidate.user[:40]:<40} probability {candidate.probability:.3f}  "
            f"evidence {evidence.pin_id} (similarity {evidence.similarity:.2f}): "
            f"{evidence.text[:60]!r}"
        )
    return "\n".join(lines)


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
    # "ranking": what pinid 0.1 called the candidates
    if not (
        isinstance(first, dict) and "pin_id" in first and {"candidates", "ranking"} & set(first)
    ):
        raise PinidError(
            f"{out}: exists and is not a predictions file pinid wrote; choose another --out"
        )


def _batch(args: argparse.Namespace) -> int:
    from pinid.api import Model
    from pinid.data import load_dataset

    _check_replaceable(Path(args.out))
    dataset = load_dataset(args.data)
    model = Model.load(args.model, progress=True, reject_below=args.reject_below)
    images = [p.image for p in dataset.pins]
    if on_cluster(args):  # the cluster fills the cache that identify_many then reads
        extract_on_cluster(args, model.extractor, images, what="query")
    answers = model.identify_many([p.text for p in dataset.pins], images, top=args.top)
    with atomic_open(args.out, "w", encoding="utf-8") as fh:
        fh.writelines(answers.json_lines([pin.pin_id for pin in dataset.pins]))
    unreadable = len(answers.image_errors)
    unknown = answers.top_users().count("unknown")
    print(
        f"{len(answers)} pins identified -> {args.out} ({unreadable} with unreadable image"
        + (f", {unknown} answered unknown" if model.reject_below is not None else "")
        + ")"
    )
    return 0
