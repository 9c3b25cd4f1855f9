"""Latency and throughput of ``pinid serve`` over HTTP on loopback.

Starts a real server (uvicorn, one worker) on a free port with an empty feature cache, so every
uploaded image goes through decoding and the CNN as a stranger's upload would, then measures:

1. single-pin latency, one client, one request at a time: p50 / p95 / mean (text + image, and
   text only), measured by the client, so HTTP and multipart parsing are included;
2. throughput with ``--clients`` concurrent clients for ``--duration`` seconds (text + image),
   counting every non-200 answer and transport error.

Goals (issue 20, 2 cores, lite0): p50 <= 20 ms for text + image, and >= 60 pins/s with 8
clients. ``--serve-args`` passes options to ``pinid serve`` (``"--batch 1"``: no micro-batching).
Example:

    python benchmarks/serve.py --model pinid-demo/model --data pinid-demo/corpus/manifest.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


P50_GOAL_MS = 20
THROUGHPUT_GOAL = 60


def start_server(model: str, cache: str, options: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "pinid", "serve", "--model", model, "--no-access-log"]
    command += options
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        env={**os.environ, "PINID_CACHE_DIR": cache},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("server did not start within 120 s")


def load_pins(manifest: Path, limit: int) -> list[tuple[str, bytes, str]]:
    pins = []
    for line in manifest.read_text(encoding="utf-8").splitlines()[:limit]:
        row = json.loads(line)
        path = manifest.parent / row["image"]
        pins.append((row["text"], path.read_bytes(), path.name))
    return pins


def post(client: httpx.Client, pin: tuple[str, bytes, str], with_image: bool) -> httpx.Response:
    text, image, name = pin
    files = {"image": (name, image, "application/octet-stream")} if with_image else None
    return client.post("/api/identify", data={"text": text}, files=files)


def latency(url: str, pins: list, n: int, with_image: bool) -> dict:
    times, server = [], []
    with httpx.Client(base_url=url, timeout=30) as client:
        post(client, pins[0], with_image)  # warm-up: connection, first CNN call
        for i in range(n):
            started = time.perf_counter()
            response = post(client, pins[i % len(pins)], with_image)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"request failed: {response.status_code} {response.text}")
            server.append(response.json()["elapsed_ms"])
    times = np.array(times)
    return {
        "requests": n,
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
        "mean_ms": round(float(times.mean()), 2),
        "server_p50_ms": round(float(np.median(server)), 2),
    }


def throughput(url: str, pins: list, clients: int, duration: float) -> dict:
    ok = [0] * clients
    errors = [0] * clients
    stop = time.monotonic() + duration

    def client_loop(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            i = k
            while time.monotonic() < stop:
                try:
                    response = post(client, pins[i % len(pins)], True)
                    if response.status_code == 200:
                        ok[k] += 1
                    else:
                        errors[k] += 1
                except httpx.HTTPError:
                    errors[k] += 1
                i += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests_ok": sum(ok),
        "errors": sum(errors),
        "pins_per_s": round(sum(ok) / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pinid-demo/model")
    parser.add_argument("--data", default="pinid-demo/corpus/manifest.jsonl")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--serve-args", default="", help="options for pinid serve")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    pins = load_pins(Path(args.data), limit=500)
    with tempfile.TemporaryDirectory(prefix="pinid-bench-cache-") as cache:
        server, url = start_server(args.model, cache, shlex.split(args.serve_args))
        try:
            figures = {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                f"Python {platform.python_version()}",
                "model": args.model,
                "serve_args": args.serve_args,
                "text_and_image": latency(url, pins, args.requests, with_image=True),
                "text_only": latency(url, pins, args.requests, with_image=False),
                "concurrent": throughput(url, pins, args.clients, args.duration),
            }
        finally:
            server.terminate()
            server.wait(timeout=30)
    both, text, load = figures["text_and_image"], figures["text_only"], figures["concurrent"]
    print(f"machine: {figures['machine']}; model {args.model} {args.serve_args}; empty cache")
    print(f"{'single pin':<22}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'server p50':>12}")
    for name, row in (("text + image", both), ("text only", text)):
        print(
            f"{name:<22}{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}{row['mean_ms']:>9.1f}"
            f"{row['server_p50_ms']:>12.1f}"
        )
    print(
        f"{load['clients']} clients x {load['seconds']} s (text + image): "
        f"{load['pins_per_s']} pins/s, {load['requests_ok']} ok, {load['errors']} errors"
    )
    verdict = "met" if both["p50_ms"] <= P50_GOAL_MS else "NOT met"
    print(f"goal p50 <= {P50_GOAL_MS} ms for text + image: {verdict} ({both['p50_ms']:.1f} ms)")
    verdict = "met" if load["pins_per_s"] >= THROUGHPUT_GOAL else "NOT met"
    print(f"goal >= {THROUGHPUT_GOAL} pins/s with 8 clients: {verdict} ({load['pins_per_s']})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
