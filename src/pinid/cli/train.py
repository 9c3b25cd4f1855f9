"""``pinid train``: a production model, C tuned on a validation split, then fit on all pins."""

from __future__ import annotations

import argparse

from pinid.cli._options import add_data_option, add_extractor_options
from pinid.models.similarity import SPACES

HELP = "train a model on all pins (C tuned on a validation split) and save it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tuning split")
    parser.add_argument("--similarity", default="joint", choices=SPACES)
    parser.add_argument("--strict", action="store_true", help="too-small users are an error")
    add_extractor_options(parser)


def main(args: argparse.Namespace) -> int:
    from pinid.data import load_dataset, make_split
    from pinid.evaluation.experiment import tune_C
    from pinid.features.dataset import prepare
    from pinid.features.extract import ImageFeatureExtractor
    from pinid.models.io import save_model
    from pinid.models.training import extractor_record, fit_identifier

    extractor = ImageFeatureExtractor(args.extractor, batch_size=args.batch_size)
    data = prepare(
        load_dataset(args.data), extractor, max_unreadable=args.max_unreadable, strict=args.strict
    )
    chosen, _ = tune_C(data, make_split(data.dataset, args.seed))
    every_pin = {p.pin_id for p in data.dataset.pins}
    model, pins = fit_identifier(data, every_pin, chosen, args.similarity)
    save_model(args.out, model, pins, extractor_record(extractor), seed=args.seed)
    print(
        f"model of {len(model.classes_)} users from {len(every_pin)} pins written to {args.out} "
        f"(C text {chosen['text']:g}, image {chosen['image']:g})"
    )
    return 0
