"""Options shared by several commands, defined once so they read the same everywhere."""

from __future__ import annotations

import argparse

from pinid.features import DEFAULT_BATCH_SIZE, DEFAULT_EXTRACTOR, EXTRACTOR_NAMES, MAX_FAILURE_RATE


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
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per CNN forward pass"
    )
    parser.add_argument(
        "--max-unreadable",
        type=float,
        default=MAX_FAILURE_RATE,
        help=f"fail when more than this share of images is unreadable (default {MAX_FAILURE_RATE})",
    )


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
        metavar="T|auto",
        help='answer "unknown" when the top probability is below T (0..1); "auto": the '
        "threshold pinid experiment chose on validation",
    )


def _threshold(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1 or auto, got {value!r}")
    return number
