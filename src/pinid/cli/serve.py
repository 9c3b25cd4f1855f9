"""``pinid serve``: the web page and JSON API over a saved model."""

from __future__ import annotations

import argparse
import os
import signal
import socket

from pinid.cli._options import add_reject_option
from pinid.errors import PinidError

HELP = "serve a page and JSON API that identify who posted a pin"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pinid.service.settings import BATCH, BATCH_WINDOW_MS, MAX_BODY_BYTES, QUEUE

    parser.add_argument("--model", required=True, help="model folder (from train or experiment)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes, each with its own model copy"
    )
    parser.add_argument(
        "--max-body-mb",
        type=float,
        default=MAX_BODY_BYTES / 2**20,
        help=f"largest request body accepted, in MB (default {MAX_BODY_BYTES // 2**20})",
    )
    parser.add_argument(
        "--queue",
        type=int,
        default=QUEUE,
        help=f"identifications admitted at once per process; more get 503 (default {QUEUE})",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help=f"most identifications answered as one micro-batch; 1: each alone (default {BATCH})",
    )
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=BATCH_WINDOW_MS,
        help="how long a micro-batch that follows another waits for more requests "
        f"(default {BATCH_WINDOW_MS:g})",
    )
    add_reject_option(parser)
    parser.add_argument(
        "--watch",
        action="store_true",
        help="take up a retrained model as soon as its folder changes (SIGHUP always does)",
    )
    parser.add_argument("--no-access-log", action="store_true", help="do not log every request")


def _check_can_listen(host: str, port: int) -> None:
    """Fail in one line now rather than in uvicorn's log after the model has loaded."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PinidError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise PinidError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _check_model(settings) -> None:
    """The model folder and threshold, checked; this process never builds the app or the CNN."""
    from pinid.models.io import load_model, rejection_threshold

    rejection_threshold(load_model(settings.model).meta, str(settings.model), settings.reject_below)


def _exit_0(*_) -> None:
    raise SystemExit(0)


def main(args: argparse.Namespace) -> int:
    # Idle OpenMP threads must sleep, not spin: between two requests' CNN calls the event loop
    # and image decoding need the cores. Read once when torch loads, so it is set before any
    # import of it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from pinid.service.batcher import MAX_WINDOW_S
    from pinid.service.settings import GRACEFUL_STOP_S, WORKER_START_S, Settings

    if args.workers < 1 or args.queue < 1 or args.batch < 1:
        raise PinidError("--workers, --queue and --batch must be at least 1")
    if not 0 <= args.batch_window_ms <= MAX_WINDOW_S * 1000:  # also refuses nan
        raise PinidError(f"--batch-window-ms must be from 0 to {MAX_WINDOW_S * 1000:g}")
    if not 0.01 <= args.max_body_mb <= 1024:  # also refuses nan
        raise PinidError("--max-body-mb must be between 0.01 and 1024")
    if not 1 <= args.port <= 65535:
        raise PinidError("--port must be between 1 and 65535")
    threads = max(1, (os.cpu_count() or 1) // args.workers) if args.workers > 1 else 0
    settings = Settings(
        args.model,
        int(args.max_body_mb * 2**20),
        args.queue,
        threads,
        args.batch,
        args.batch_window_ms,
        args.reject_below,
        args.watch,
    )
    _check_can_listen(args.host, args.port)
    # A bad model folder fails here, in one line, before anything is served. With several
    # workers only they hold a model; this process only checks the folder.
    app = settings.load_app() if args.workers == 1 else _check_model(settings)
    print(
        f"pinid: serving {settings.model} at http://{args.host}:{args.port}/ "
        f"({args.workers} worker{'s' * (args.workers > 1)}; Ctrl-C stops)",
        flush=True,
    )
    common = {
        "host": args.host,
        "port": args.port,
        "access_log": not args.no_access_log,
        "log_level": "info",
        "timeout_graceful_shutdown": GRACEFUL_STOP_S,
    }
    # uvicorn stops gracefully on SIGTERM (no new connections; requests in flight finish), then
    # raises the signal again for the handler it found: this one, so that the stop is exit 0.
    previous = signal.signal(signal.SIGTERM, _exit_0)
    try:
        if args.workers == 1:
            uvicorn.run(app, **common)
        else:  # each worker process builds its own app from the settings in its environment
            os.environ.update(settings.to_environment())
            uvicorn.run(
                "pinid.service.settings:app_from_environment",
                factory=True,
                workers=args.workers,
                timeout_worker_healthcheck=WORKER_START_S,  # on SIGHUP, a new worker loads
                **common,
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
