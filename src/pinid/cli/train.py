"""``pinid train``: a production model, C tuned on a validation split, then fit on all pins."""

from __future__ import annotations

import argparse
from pathlib import Path

from pinid.cli._options import add_data_option, add_extractor_options, add_split_options
from pinid.models.similarity import SPACES

HELP = "train a model on all pins (C tuned on a validation split) and save it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    parser.add_argument("--out", required=True, help="model folder to write")
    add_split_options(parser)
    parser.add_argument("--similarity", default="joint", choices=SPACES)
    add_extractor_options(parser)


def main(args: argparse.Namespace) -> int:
    from pinid.data import load_dataset, make_split
    from pinid.evaluation.experiment import split_for, tune_C
    from pinid.features.dataset import prepare
    from pinid.features.extract import ImageFeatureExtractor
    from pinid.models.io import save_model
    from pinid.models.training import extractor_record, fit_identifier

    dataset = load_dataset(args.data).drop_small_users(strict=args.strict)
    split = split_for(dataset, Path(args.split)) if args.split else make_split(dataset, args.seed)
    extractor = ImageFeatureExtractor(args.extractor, batch_size=args.batch_size)
    data = prepare(dataset, extractor, max_unreadable=args.max_unreadable, strict=args.strict)
    chosen, _ = tune_C(data, split)
    every_pin = {p.pin_id for p in data.dataset.pins}
    model, pins = fit_identifier(
        data, every_pin, chosen, args.similarity, calibrate_ids=split.ids("val")
    )
    save_model(args.out, model, pins, extractor_record(extractor), seed=args.seed)
    print(
        f"model of {len(model.classes_)} users from {len(every_pin)} pins written to {args.out} "
        f"(C text {chosen['text']:g}, characters {chosen['char']:g}, image {chosen['image']:g})"
    )
    return 0
