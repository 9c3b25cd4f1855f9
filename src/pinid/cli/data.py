"""``pinid data``: build the embedded openclipart corpus, check a dataset, save its split."""

from __future__ import annotations

import argparse
import statistics

from pinid.data import load_dataset, make_split, save_split
from pinid.data.openclipart import TEXT_FIELDS, build_corpus

HELP = "build the openclipart corpus, or check and split a dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    oc = actions.add_parser("openclipart", help="build the embedded default corpus")
    oc.add_argument("--out", required=True, help="folder for manifest.jsonl and images/")
    oc.add_argument("--min-pins", type=int, default=10, help="creators with fewer are left out")
    oc.add_argument("--max-pins", type=int, default=150, help="at most this many clips per creator")
    oc.add_argument(
        "--text-fields",
        default=",".join(TEXT_FIELDS),
        help="comma-separated subset of title,description,keywords (default: all)",
    )
    oc.add_argument("--seed", type=int, default=0)
    oc.add_argument("--source", help="an openclipart svg folder (default: installed or fetched)")

    check = actions.add_parser("check", help="validate a manifest or folder and summarise it")
    check.add_argument("--data", required=True, help="manifest (.jsonl/.csv) or folder tree")
    check.add_argument("--strict", action="store_true", help="too-small users are an error")

    split = actions.add_parser("split", help="write the seeded 4:1:1 split (pin_id -> part)")
    split.add_argument("--data", required=True, help="manifest (.jsonl/.csv) or folder tree")
    split.add_argument("--out", required=True, help="split file to write (JSON)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--strict", action="store_true", help="too-small users are an error")


def main(args: argparse.Namespace) -> int:
    if args.action == "openclipart":
        summary = build_corpus(
            args.out,
            min_pins=args.min_pins,
            max_pins=args.max_pins,
            text_fields=[f.strip() for f in args.text_fields.split(",") if f.strip()],
            seed=args.seed,
            source=args.source,
        )
        print("\n".join(summary.lines()))
        print(f"  manifest: {args.out}/manifest.jsonl")
        return 0
    dataset = load_dataset(args.data).drop_small_users(strict=args.strict)
    if args.action == "check":
        counts = sorted(dataset.pins_per_user().values())
        words = [len(p.text.split()) for p in dataset.pins]
        print(f"{dataset.source}: {len(dataset.users)} users, {len(dataset)} pins")
        print(
            f"  pins per user: min {counts[0]} / median {statistics.median(counts):g} "
            f"/ max {counts[-1]}; median words per pin {statistics.median(words):g}"
        )
        return 0
    split = make_split(dataset, seed=args.seed)
    save_split(split, args.out)
    train, val, test = (len(split.ids(part)) for part in ("train", "val", "test"))
    print(f"split of {len(dataset)} pins written to {args.out}: ", end="")
    print(f"{train} train, {val} validation, {test} test")
    return 0
