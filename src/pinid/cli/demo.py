"""``pinid demo``: the main job on the embedded default corpus, end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "build the openclipart corpus and run the paper's experiment on it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="pinid-demo", help="folder for corpus and results")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from pinid.cli._tables import format_summary, format_table
    from pinid.data import load_dataset
    from pinid.data.openclipart import build_corpus
    from pinid.evaluation.experiment import run_experiment
    from pinid.report import write_report

    out = Path(args.out)
    summary = build_corpus(out / "corpus", seed=args.seed)
    print("\n".join(summary.lines()))
    results, _ = run_experiment(
        load_dataset(out / "corpus" / "manifest.jsonl"), out, seed=args.seed
    )
    print()
    print(format_summary(results))
    print(format_table(results))
    print(f"\ncorpus:  {out / 'corpus' / 'manifest.jsonl'}")
    print(f"results: {out / 'results.json'}")
    print(f"model:   {out / 'model'}")
    print(f"report:  {write_report(out)}")
    print(f'try:     pinid predict --model {out / "model"} --text "red apple fruit" --json')
    print(f"         pinid serve --model {out / 'model'}   (then open http://127.0.0.1:8000/)")
    return 0
