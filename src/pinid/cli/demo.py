"""``pinid demo``: the main job on the embedded default corpus, end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

from pinid.data.openclipart import build_corpus

HELP = "build the openclipart corpus and run the paper's experiment on it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="pinid-demo", help="folder for corpus and results")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    summary = build_corpus(out / "corpus", seed=args.seed)
    print("\n".join(summary.lines()))
    print(f"corpus manifest: {out / 'corpus' / 'manifest.jsonl'}")
    return 0
