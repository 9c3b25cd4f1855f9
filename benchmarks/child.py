"""What the growth benchmarks share: one measurement in a fresh child process (so that its
peak RSS is its own and a run past its budget can be stopped), and the machine it ran on."""

from __future__ import annotations

import multiprocessing
import os
import platform
import queue as queue_module
from collections.abc import Callable
from typing import Any


def _put(queue, fn: Callable[..., Any], args: tuple) -> None:
    queue.put(fn(*args))


def in_child(fn: Callable[..., Any], *args: Any, budget_s: float) -> Any | None:
    """``fn(*args)`` in a forked child process; None if it has not answered within
    ``budget_s`` (the child is killed either way)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_put, args=(queue, fn, args))
    child.start()
    try:
        return queue.get(timeout=budget_s)
    except queue_module.Empty:
        return None
    finally:
        child.kill()
        child.join()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
