"""``pinid features``: compute and cache the image features of a dataset."""

from __future__ import annotations

import argparse

from pinid.cli._options import (
    add_cluster_options,
    add_data_option,
    add_extractor_options,
    extract_on_cluster,
    on_cluster,
)

HELP = "compute and cache the CNN image features of a dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_option(parser)
    add_extractor_options(parser)
    add_cluster_options(parser)


def main(args: argparse.Namespace) -> int:
    from pinid.data import load_dataset
    from pinid.features.extract import ImageFeatureExtractor, check_failure_rate

    dataset = load_dataset(args.data)
    extractor = ImageFeatureExtractor(
        args.extractor, batch_size=args.batch_size, style=args.style, engine=args.engine
    )
    paths = [pin.image for pin in dataset.pins]
    if on_cluster(args):
        result = extract_on_cluster(args, extractor, paths, what="images")
    else:
        result = extractor.extract(paths)
    print(
        f"{dataset.source}: {len(dataset)} pins, {result.computed} computed, "
        f"{result.from_cache} from cache, {result.duplicates} same image as another pin, "
        f"{len(result.unreadable)} unreadable"
    )
    for index, reason in sorted(result.unreadable.items()):
        pin = dataset.pins[index]
        print(f"  {pin.pin_id} ({pin.image}): unreadable: {reason}")
    print(f"cache: {extractor.cache.folder}")
    check_failure_rate(result.unreadable, [str(p.image) for p in dataset.pins], args.max_unreadable)
    return 0
