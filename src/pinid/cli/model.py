"""``pinid model upgrade DIR``: a model folder of an earlier pinid rewritten in today's format."""

from __future__ import annotations

import argparse

HELP = "manage model folders (upgrade one saved by an earlier pinid)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    upgrade = actions.add_parser(
        "upgrade", help="rewrite a model folder in the current format, in place"
    )
    upgrade.add_argument("folder", metavar="DIR", help="the model folder")


def main(args: argparse.Namespace) -> int:
    from pinid.models.io import SCHEMA_VERSION, upgrade

    if upgrade(args.folder):
        print(f"{args.folder}: upgraded to model format {SCHEMA_VERSION}")
    else:
        print(f"{args.folder}: already in model format {SCHEMA_VERSION}; nothing to do")
    return 0
