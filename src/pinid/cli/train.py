"""``pinid train``: a production model, C tuned on a validation split, then fit on all pins."""

from __future__ import annotations

import argparse

from pinid.cli._options import (
    add_cluster_options,
    add_data_option,
    add_extractor_options,
    add_split_options,
    training_fits,
)
from pinid.models.similarity import SPACES

HELP = "train a model on all pins (C tuned on a validation split) and save it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    parser.add_argument("--out", required=True, help="model folder to write")
    add_split_options(parser)
    parser.add_argument("--similarity", default="joint", choices=SPACES)
    add_extractor_options(parser)
    add_cluster_options(parser)


def main(args: argparse.Namespace) -> int:
    from pinid._atomic import output_lock
    from pinid.api import train
    from pinid.data import load_dataset
    from pinid.features.extract import ImageFeatureExtractor
    from pinid.models.modality import describe_C

    with output_lock(args.out):  # a second `pinid train --out` of the same folder refuses
        dataset = load_dataset(args.data)
        extractor = ImageFeatureExtractor(
            args.extractor, batch_size=args.batch_size, style=args.style, engine=args.engine
        )
        with training_fits(args, extractor, [p.image for p in dataset.pins]) as fits:
            model = train(
                dataset,
                seed=args.seed,
                split=args.split,
                extractor=args.extractor,
                style=args.style,
                engine=args.engine,
                similarity=args.similarity,
                batch_size=args.batch_size,
                max_unreadable=args.max_unreadable,
                strict=args.strict,
                fits=fits,
            )
        model.save(args.out)
    final = model.final
    print(
        f"model of {len(model.users)} users from {len(model.pins.pin_ids)} pins written to "
        f"{args.out} (C text {final.C_text:g}, characters {describe_C(final.C_char)}, "
        f"image {final.C_image:g})"
    )
    print(rejection_summary(model.meta))
    return 0


def rejection_summary(meta: dict) -> str:
    """The threshold chosen in training and what it did to held-out users, in one line."""
    from pinid.cli._tables import rejection_rates

    unknown = meta.get("unknown_users", {})
    if "skipped" in unknown:
        return f'no rejection threshold (it never answers "unknown"): {unknown["skipped"]}'
    rates = rejection_rates(unknown["test_at_threshold"])
    return f'answers "unknown" below probability {meta["reject_below"]:.2f}: {rates}'
