"""``pinid link``: which accounts does one person run? Pairs of accounts, best first, with the
pin pairs that make them look alike."""

from __future__ import annotations

import argparse
import json

from pinid._atomic import atomic_open
from pinid.cli._options import add_extractor_options

HELP = "list the pairs of accounts most likely run by one person, with evidence"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a model folder: link its users")
    source.add_argument(
        "--data", help="a manifest or folder tree: link its accounts without a trained model"
    )
    parser.add_argument("--top", type=_top, default=20, help="how many pairs (1..1000, default 20)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help='print {"pairs": [...]} as JSON')
    output.add_argument("--out", help="write the pairs to this JSON Lines file, one per line")
    add_extractor_options(parser)


def _top(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 1000:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 1000, got {value!r}")
    return number


def main(args: argparse.Namespace) -> int:
    from pinid.api import Model, link

    if args.model:
        pairs = Model.load(args.model).links(args.top)
    else:
        pairs = link(args.data, top=args.top, extractor=args.extractor, style=args.style,
                     engine=args.engine, batch_size=args.batch_size,
                     max_unreadable=args.max_unreadable)  # fmt: skip
    records = [pair.model_dump() for pair in pairs]
    if args.json:
        print(json.dumps({"pairs": records}, indent=2, ensure_ascii=False))
    elif args.out:
        with atomic_open(args.out) as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"{len(records)} pairs of accounts written to {args.out}")
    else:
        print(format_pairs(records))
    return 0


def format_pairs(records: list[dict]) -> str:
    """Each pair, its score and its best evidence, for a terminal."""
    lines = []
    for rank, pair in enumerate(records, 1):
        a, b = pair["accounts"]
        lines.append(f"{rank:>3}. {a}  ~  {b}   score {pair['score']:.3f}")
        for e in pair["evidence"]:
            texts = " | ".join(_short(t) for t in e["texts"])
            lines.append(f"       {e['view']:<5} {e['similarity']:.2f}  {texts}")
    return "\n".join(lines)


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
