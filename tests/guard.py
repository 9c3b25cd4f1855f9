"""An audit hook that catches pinid reading where it must not, or touching the network.

Python raises an audit event for every ``open`` and ``socket.connect`` made from Python code;
the hook refuses those that reach a forbidden folder or any address, and reports each on
stderr with ``GUARD`` so a test can fail on it. (Reads made inside C libraries do not raise
events; pinid hands CairoSVG a URL fetcher written in Python, so its fetches do.)

In a test process: ``watch(folder)`` / ``violations()``. Around a command::

    python tests/guard.py FORBIDDEN_FOLDER pinid-arguments...
"""

from __future__ import annotations

import os
import sys

_forbidden: list[str] = []
_violations: list[str] = []


def _hook(event: str, args: tuple) -> None:
    if not _forbidden:
        return
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.realpath(os.fsdecode(args[0]))
        if any(path == f or path.startswith(f + os.sep) for f in _forbidden):
            _report(f"read of {path}")
            raise PermissionError(f"guard: {path} is outside the data folder")
    elif event == "socket.connect":
        _report(f"network connection to {args[1]!r}")
        raise PermissionError("guard: no network connections")


def _report(what: str) -> None:
    _violations.append(what)
    os.write(2, f"GUARD: {what}\n".encode())


def watch(*folders: str | os.PathLike) -> None:
    """Start refusing reads under ``folders`` and every network connection (idempotent)."""
    if not _forbidden and not getattr(sys, "_pinid_guard", False):
        sys.addaudithook(_hook)  # hooks cannot be removed; an empty watch list disables it
        sys._pinid_guard = True
    _forbidden[:] = [os.path.realpath(f) for f in folders]
    _violations.clear()


def stop() -> list[str]:
    """Stop watching; returns what was caught."""
    _forbidden.clear()
    return list(_violations)


if __name__ == "__main__":
    watch(sys.argv[1])
    from pinid.cli import main

    sys.exit(main(sys.argv[2:]))
