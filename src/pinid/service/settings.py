"""How a service process is configured, passed to worker processes through the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MAX_BODY_BYTES = 32 * 1024 * 1024
"""Fits a phone's photo: a 48 MP JPEG or HEIC is 3-15 MB, a 200 MP JPEG 20-30 MB."""
QUEUE = 32
"""Identification jobs admitted at once (running or waiting); one more gets 503."""
BATCH = 16
"""Most identifications answered as one micro-batch (1: each alone)."""
BATCH_WINDOW_MS = 0.0
"""How long a micro-batch that follows another waits for more requests (0: it takes those that
queued while the last one ran)."""
WATCH_INTERVAL_S = 1.0
"""How often ``--watch`` looks at the model folder."""
GRACEFUL_STOP_S = 10
"""On SIGTERM, how long requests in flight may take to finish."""
WORKER_START_S = 300
"""With ``--workers N``, how long a worker restarted by SIGHUP may take to load its model before
the old one is kept (uvicorn's default of 5 s is shorter than loading torch and a model)."""

_PREFIX = "PINID_SERVE_"


@dataclass(frozen=True)
class Settings:
    model: Path | str
    max_body_bytes: int = MAX_BODY_BYTES
    queue: int = QUEUE
    threads: int = 0
    """CNN threads per process; 0: every core."""
    batch: int = BATCH
    batch_window_ms: float = BATCH_WINDOW_MS
    reject_below: float | str | None = "auto"
    """Answer "unknown" below this top probability ("auto": the model's chosen threshold;
    None: never)."""
    watch: bool = False
    """Take up a retrained model as soon as its folder changes."""

    def load_app(self):
        """Load the model (once) and build the ASGI application around it."""
        from pinid.api import Model
        from pinid.service.app import create_app, folder_signature

        signature = folder_signature(Path(self.model))  # before reading: a later change reloads
        return create_app(
            Model.load(self.model, reject_below=self.reject_below),
            signature=signature,
            max_body_bytes=self.max_body_bytes,
            queue=self.queue,
            batch=self.batch,
            batch_window_ms=self.batch_window_ms,
            threads=self.threads or None,
            watch_s=WATCH_INTERVAL_S if self.watch else None,
        )

    def to_environment(self) -> dict[str, str]:
        return {
            f"{_PREFIX}MODEL": str(self.model),
            f"{_PREFIX}MAX_BODY_BYTES": str(self.max_body_bytes),
            f"{_PREFIX}QUEUE": str(self.queue),
            f"{_PREFIX}THREADS": str(self.threads),
            f"{_PREFIX}BATCH": str(self.batch),
            f"{_PREFIX}BATCH_WINDOW_MS": str(self.batch_window_ms),
            f"{_PREFIX}REJECT_BELOW": "" if self.reject_below is None else str(self.reject_below),
            f"{_PREFIX}WATCH": "1" if self.watch else "",
        }

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            os.environ[f"{_PREFIX}MODEL"],
            int(os.environ[f"{_PREFIX}MAX_BODY_BYTES"]),
            int(os.environ[f"{_PREFIX}QUEUE"]),
            int(os.environ[f"{_PREFIX}THREADS"]),
            int(os.environ[f"{_PREFIX}BATCH"]),
            float(os.environ[f"{_PREFIX}BATCH_WINDOW_MS"]),
            _threshold(os.environ[f"{_PREFIX}REJECT_BELOW"]),
            bool(os.environ.get(f"{_PREFIX}WATCH")),
        )


def _threshold(value: str) -> float | str | None:
    return None if value == "" else value if value == "auto" else float(value)


def app_from_environment():
    """uvicorn's factory in each worker process of ``pinid serve --workers N``."""
    return Settings.from_environment().load_app()
