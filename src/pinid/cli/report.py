"""``pinid report``: regenerate a run's report.html and figures from its results.json."""

from __future__ import annotations

import argparse

HELP = "write RUN_DIR/report.html and RUN_DIR/figures/ from RUN_DIR/results.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder written by pinid experiment")


def main(args: argparse.Namespace) -> int:
    from pinid.report import write_report

    print(f"report: {write_report(args.run)}")
    return 0
