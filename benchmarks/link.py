"""Account linking (``pinid link``) at growing numbers of accounts.

On synthetic corpora (benchmarks/synthetic.py: Zipfian words with per-user topics, clustered
1280-d image features, L2-normalised as the image view) with ``--pins-per-user`` pins per user,
times ``AccountLinker().fit(texts, image_vectors, accounts)`` and ``.pairs(20)``, each size in
its own child process. Peak RSS is that process's high-water mark from just before ``fit`` (the
inputs already resident: texts, image vectors, account names) to the end of ``pairs``; the
corpus generator's own peak is left out (/proc/self/clear_refs resets the mark).

Goals (issue): 10,000 accounts in <= 5 min and <= 4 GB peak RSS.

    python benchmarks/link.py [--users 117,2000,10000] [--pins-per-user 30] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from child import in_child, machine
from synthetic import PAPER_PINS_PER_USER, PAPER_USERS, generate

GOAL_USERS, GOAL_S, GOAL_MB = 10_000, 300, 4096
TOP = 20


def _rss_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process in MB, or None where /proc does not give them."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Start the high-water mark afresh (Linux >= 4.0), so it measures linking only."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_freed() -> None:
    """Hand memory the generator freed back to the system (glibc keeps it otherwise), so the
    resident inputs are the linker's inputs, not the generator's leftovers."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to hand back
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _inputs(users: int, pins_per_user: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    corpus = generate(users * pins_per_user / (PAPER_USERS * PAPER_PINS_PER_USER), users)
    images = corpus.images  # normalised in place: no second copy of the largest input
    images /= np.maximum(np.linalg.norm(images, axis=1, keepdims=True), 1e-12)
    return corpus.texts, images, corpus.users


def link(users: int, pins_per_user: int) -> dict:
    from pinid.models.linking import AccountLinker

    texts, images, accounts = _inputs(users, pins_per_user)
    gc.collect()
    _release_freed()
    inputs_mb = _rss_mb("VmRSS")
    reset = _reset_peak()
    started = time.perf_counter()
    linker = AccountLinker().fit(texts, images, accounts)
    fitted = time.perf_counter()
    pairs = linker.pairs(TOP)
    done = time.perf_counter()
    peak = _rss_mb("VmHWM") if reset else None
    if peak is None:  # whole-process peak, generator included
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "users": users,
        "pins": len(texts),
        "fit_s": round(fitted - started, 1),
        "pairs_s": round(done - fitted, 1),
        "total_s": round(done - started, 1),
        "peak_rss_mb": round(peak),
        "inputs_rss_mb": round(inputs_mb) if inputs_mb is not None else None,
        "peak_is_linking_only": reset,
        "pairs": len(pairs),
        "calibration": [round(c, 4) for c in linker.calibration_],
    }


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| users | pins | fit s | pairs s | total s | peak RSS MB | inputs RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        inputs = "?" if r["inputs_rss_mb"] is None else f"{r['inputs_rss_mb']:,}"
        lines.append(
            f"| {r['users']:,} | {r['pins']:,} | {r['fit_s']} | {r['pairs_s']} | {r['total_s']} "
            f"| {r['peak_rss_mb']:,} | {inputs} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="117,2000,10000", help="comma-separated sizes")
    parser.add_argument("--pins-per-user", type=int, default=30)
    parser.add_argument("--budget", type=float, default=1800, help="seconds one size may take")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    print(f"machine: {machine()}; {args.pins_per_user} pins per user; pairs({TOP})", flush=True)
    rows = []
    for users in (int(u) for u in args.users.split(",")):
        row = in_child(link, users, args.pins_per_user, budget_s=args.budget)
        if row is None:
            print(f"  {users} users: not finished in {args.budget:.0f} s", flush=True)
            continue
        rows.append(row)
        print(f"  {row}", flush=True)
    print("\n".join(table(rows)))
    for r in rows:
        if r["users"] >= GOAL_USERS:
            met = r["total_s"] <= GOAL_S and r["peak_rss_mb"] <= GOAL_MB
            print(f"goal at {r['users']:,} users (<= {GOAL_S} s, <= {GOAL_MB} MB): "
                  f"{'met' if met else 'NOT met'}")  # fmt: skip
    if args.json:
        result = {"machine": machine(), "pins_per_user": args.pins_per_user, "rows": rows}
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
