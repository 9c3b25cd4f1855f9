"""A real ``pinid serve`` at saturation for minutes, with a mix of clients: text only, text +
image, over-limit uploads, damaged images and slow-drip senders.

    python benchmarks/soak.py --model pinid-demo/model --minutes 10 --json soak.json

Prints the answers, the errors by status, p50/p99 of the accepted answers (text and text + image;
a slow-drip client's time is its own) and the server's RSS at one minute and at the end, then
the goals: no 5xx but 503, RSS growth after the first minute within 10 %, p99 within 10x p50.
Clients are threads of this process; the server is its own process (its RSS is read from /proc).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

KINDS = ("text", "text+image", "text+image", "oversize", "damaged", "slow-drip")
"""Each request picks one of these at random: text and text + image most often."""
CAP_MB = 2
EXPECTED = {
    "text": {200},
    "text+image": {200},
    "slow-drip": {200},
    "oversize": {413},
    "damaged": {415, 422},
}
"""What each kind must get; 503 (queue full) is allowed for any."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _payloads(model: Path) -> dict:
    """Texts and images of the model's own training pins (thumbnails), a damaged image and an
    over-limit upload."""
    doc = json.loads((model / "model.json").read_text(encoding="utf-8"))
    texts = [t for t in doc["training_pins"]["text"] if t.strip()]
    images = [p.read_bytes() for p in sorted((model / "thumbnails").glob("*.jpg"))[:200]]
    if not images:  # a model without thumbnails: plain generated pictures
        for seed in range(20):
            pixels = np.random.default_rng(seed).integers(0, 255, (96, 96, 3), np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG")
            images.append(buffer.getvalue())
    return {
        "texts": texts,
        "images": images,
        "damaged": images[0][: len(images[0]) // 2],
        "oversize": b"\0" * (CAP_MB + 1) * 2**20,
    }


def _multipart(text: str, image: bytes | None) -> tuple[bytes, str]:
    boundary = "soak-boundary"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'.encode()
    if image is not None:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                 'filename="pin.jpg"\r\nContent-Type: image/jpeg\r\n\r\n').encode()  # fmt: skip
        body += image + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _slow_drip(port: int, body: bytes, kind: str, pieces: int = 10, pause_s: float = 0.2) -> int:
    """Send a pin in ``pieces`` with pauses (a slow phone connection); the answer's status."""
    head = (f"POST /api/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        step = -(-len(body) // pieces)
        for start in range(0, len(body), step):
            sock.sendall(body[start : start + step])
            time.sleep(pause_s)
        reply = b""
        while b"\r\n" not in reply and (chunk := sock.recv(4096)):
            reply += chunk
    return int(reply.split()[1])


def _client(url: str, port: int, payloads: dict, deadline: float, seed: int, log: list) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=120) as http:
        while time.monotonic() < deadline:
            kind = rng.choice(KINDS)
            text = rng.choice(payloads["texts"])
            image = rng.choice(payloads["images"])
            started = time.perf_counter()
            try:
                if kind == "slow-drip":
                    status = _slow_drip(port, *_multipart(text, image))
                else:
                    upload = {"text": None, "text+image": image, "oversize": payloads["oversize"],
                              "damaged": payloads["damaged"]}[kind]  # fmt: skip
                    body, content_type = _multipart(text, upload)
                    response = http.post(f"{url}/api/identify", content=body,
                                         headers={"content-type": content_type})  # fmt: skip
                    status = response.status_code
            except (httpx.TransportError, OSError) as exc:
                status = f"transport error: {type(exc).__name__}"
            log.append((kind, status, time.perf_counter() - started))


def soak(model: Path, seconds: float, clients: int) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "pinid", "serve", "--model", str(model), "--port", str(port),
               "--max-body-mb", str(CAP_MB), "--no-access-log"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not start within two minutes")
        payloads = _payloads(model)
        log: list = []
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=_client, args=(url, port, payloads, deadline, i, log))
                   for i in range(clients)]  # fmt: skip
        for thread in threads:
            thread.start()
        time.sleep(min(60.0, seconds / 2))
        rss_1min = _rss_mb(server.pid)
        for thread in threads:
            thread.join()
        rss_end = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return _summary(log, rss_1min, rss_end, seconds, clients)


def _summary(log: list, rss_1min: float, rss_end: float, seconds: float, clients: int) -> dict:
    by_status = Counter(str(status) for _, status, _ in log)
    latencies = [t for kind, status, t in log if status == 200 and kind in ("text", "text+image")]
    p50, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99)) if latencies else (
        float("nan"), float("nan"))  # fmt: skip
    wrong = Counter((kind, str(status)) for kind, status, _ in log
                    if status != 503 and status not in EXPECTED[kind])  # fmt: skip
    return {
        "seconds": seconds,
        "clients": clients,
        "answers": sum(status == 200 for _, status, _ in log),
        "requests": len(log),
        "errors_by_status": {s: n for s, n in sorted(by_status.items()) if s != "200"},
        "unexpected": {f"{kind} -> {status}": n for (kind, status), n in sorted(wrong.items())},
        "by_kind": {
            kind: dict(Counter(str(status) for k, status, _ in log if k == kind))
            for kind in EXPECTED
        },
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "rss_mb_1min": round(rss_1min, 1),
        "rss_mb_end": round(rss_end, 1),
    }


def goals(result: dict) -> dict[str, bool]:
    server_errors = [s for s in result["errors_by_status"] if s.startswith("5") and s != "503"]
    return {
        "no 5xx but 503": not server_errors,
        "RSS growth after the first minute <= 10 %": (
            result["rss_mb_end"] <= 1.10 * result["rss_mb_1min"]
        ),
        "p99 <= 10x p50": result["p99_ms"] <= 10 * result["p50_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pinid-demo/model", help="model folder to serve")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=10.0)
    length.add_argument("--seconds", type=float, help="instead of --minutes")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else 60 * args.minutes
    result = soak(Path(args.model), seconds, args.clients)
    r = result
    print(f"{r['requests']} requests from {args.clients} clients in {seconds:g} s: "
          f"{r['answers']} answers; errors by status {r['errors_by_status']}")  # fmt: skip
    print(f"accepted answers: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; server RSS "
          f"{r['rss_mb_1min']} MB at one minute, {r['rss_mb_end']} MB at the end")  # fmt: skip
    if result["unexpected"]:
        print(f"unexpected answers: {result['unexpected']}")
    met = goals(result)
    for goal, ok in met.items():
        print(f"  {'met    ' if ok else 'NOT MET'}  {goal}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if not all(met.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
