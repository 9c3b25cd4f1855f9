"""``pinid experiment``: the paper's protocol on a dataset, table 2 and results.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from pinid.cli._options import (
    add_cluster_options,
    add_data_option,
    add_extractor_options,
    add_split_options,
    training_fits,
)
from pinid.models.similarity import SPACES

HELP = "run the paper's protocol (split 4:1:1, tune C, refit, test every model)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    parser.add_argument("--out", required=True, help="run folder for results.json and model/")
    add_split_options(parser)
    parser.add_argument(
        "--similarity", default="joint", choices=SPACES, help="space of the refinement (cf_ref)"
    )
    add_extractor_options(parser)
    add_cluster_options(parser)


def main(args: argparse.Namespace) -> int:
    from pinid._atomic import output_lock
    from pinid.cli._tables import format_summary, format_table
    from pinid.data import load_dataset
    from pinid.evaluation.experiment import run_experiment
    from pinid.features.extract import ImageFeatureExtractor
    from pinid.report import write_report

    out = Path(args.out)
    with output_lock(out):  # a second experiment into the same folder refuses
        dataset = load_dataset(args.data)
        extractor = ImageFeatureExtractor(
            args.extractor, batch_size=args.batch_size, style=args.style, engine=args.engine
        )
        with training_fits(args, extractor, [p.image for p in dataset.pins]) as fits:
            results, _ = run_experiment(
                dataset,
                out,
                seed=args.seed,
                extractor=extractor,
                similarity=args.similarity,
                max_unreadable=args.max_unreadable,
                strict=args.strict,
                split_file=Path(args.split) if args.split else None,
                fits=fits,
            )
        report = write_report(out)
    print(format_summary(results))
    print(format_table(results))
    print(f"results: {out / 'results.json'}\nmodel: {out / 'model'}")
    print(f"report: {report}")
    return 0
