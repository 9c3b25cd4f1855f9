"""The ``pinid`` command: one module per subcommand, each with ``add_arguments`` and ``main``.

This entry point only dispatches. A new command is a new module in this package defining
``HELP``, ``add_arguments(parser)`` and ``main(args) -> int``; nothing else needs editing.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Sequence

from pinid import __version__
from pinid.data.pins import PinidWarning
from pinid.errors import PinidError


def _command_modules() -> dict[str, object]:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return {name: importlib.import_module(f"{__name__}.{name}") for name in names}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pinid", description="Which user posted this pin? (image + short text)"
    )
    parser.add_argument("--version", action="version", version=f"pinid {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _command_modules().items():
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_main=module.main)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, PinidWarning):
        print(f"pinid: warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; expected faults end as one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args._main(args) or 0)
    except PinidError as exc:
        print(f"pinid: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0
    except OSError as exc:  # the file system said no (an --out that is a folder, a full disk...)
        where = exc.filename if exc.filename else ""
        print(f"pinid: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pinid: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous
