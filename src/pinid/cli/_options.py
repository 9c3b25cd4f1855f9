"""Options shared by several commands, defined once so they read the same everywhere."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pinid.features import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_ENGINE,
    DEFAULT_EXTRACTOR,
    DEFAULT_SHARD_SIZE,
    ENGINES,
    EXTRACTOR_NAMES,
    MAX_FAILURE_RATE,
)

if TYPE_CHECKING:
    from pinid.features.distributed import ShardedRun
    from pinid.features.extract import ImageFeatureExtractor
    from pinid.models.fits import Fits


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="manifest (.jsonl/.csv) or folder tree <user>/<board>/<pin>"
    )


def add_extractor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--extractor",
        default=DEFAULT_EXTRACTOR,
        choices=EXTRACTOR_NAMES,
        help=f"ImageNet CNN for image features (default {DEFAULT_EXTRACTOR})",
    )
    parser.add_argument(
        "--pooled-only",
        dest="style",
        action="store_false",
        help="the paper's image features: the CNN's pooled features without style statistics",
    )
    parser.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        choices=ENGINES,
        help=f"what runs the CNN (default {DEFAULT_ENGINE}; torch: PyTorch eager, the slower "
        "reference); features of two engines are cached apart",
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per CNN forward pass"
    )
    parser.add_argument(
        "--max-unreadable",
        type=float,
        default=MAX_FAILURE_RATE,
        help=f"fail when more than this share of images is unreadable (default {MAX_FAILURE_RATE})",
    )


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="compute image features (and, for train and experiment, the independent model "
        "fits) on the Dask cluster of this scheduler (tcp://HOST:8786); every worker must reach "
        "the images and the cache folder ($PINID_CACHE_DIR) at the same paths as this machine",
    )
    where.add_argument(
        "--local-workers",
        type=_positive,
        metavar="N",
        help="compute image features (and, for train and experiment, the independent model "
        "fits) on a Dask cluster of N processes on this machine",
    )
    parser.add_argument(
        "--shard-size",
        type=_positive,
        default=DEFAULT_SHARD_SIZE,
        help=f"images per task sent to a Dask worker (default {DEFAULT_SHARD_SIZE})",
    )
    parser.add_argument(
        "--worker-threads",
        type=_positive,
        metavar="N",
        help="CNN threads per Dask worker (default: its machine's cores shared among its "
        "workers, at least 2: with 1, torch's features differ from an in-process run's in the last "
        "digits)",
    )


def on_cluster(args: argparse.Namespace) -> bool:
    return bool(args.scheduler or args.local_workers)


def extract_on_cluster(
    args: argparse.Namespace, extractor: ImageFeatureExtractor, paths: Sequence[Path], what: str
) -> ShardedRun:
    """Image features into the cache, computed on the cluster the options name."""
    from pinid.features import distributed

    with distributed.connect(args.scheduler, args.local_workers) as client:
        return distributed.extract_on_cluster(
            client,
            extractor,
            paths,
            shard_size=args.shard_size,
            threads=args.worker_threads,
            what=what,
        )


@contextlib.contextmanager
def training_fits(
    args: argparse.Namespace, extractor: ImageFeatureExtractor, paths: Sequence[Path]
) -> Iterator[Fits | None]:
    """Where training's fits run: None (in this process) without cluster options; else the
    cluster they name, whose workers first compute the image features into the cache."""
    if not on_cluster(args):
        yield None
        return
    from pinid.features import distributed
    from pinid.models.distributed import OnCluster

    with distributed.connect(args.scheduler, args.local_workers) as client:
        distributed.extract_on_cluster(client, extractor, paths, shard_size=args.shard_size,
                                       threads=args.worker_threads, what="images")  # fmt: skip
        yield OnCluster(client)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return number


def add_split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the 4:1:1 split (default 0)")
    parser.add_argument(
        "--split", help="use this saved split (from `pinid data split`) instead of making one"
    )
    parser.add_argument("--strict", action="store_true", help="too-small users are an error")


def add_reject_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reject-below",
        type=_threshold,
        default="auto",
        metavar="T|auto|none",
        help='answer "unknown" when the top probability is below T (0..1); "auto" (default): '
        'the threshold chosen on held-out users when the model was trained; "none": never',
    )


def _threshold(value: str) -> float | str | None:
    if value == "none":
        return None
    if value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"expected a number from 0 to 1, auto or none, got {value!r}"
        )
    return number
