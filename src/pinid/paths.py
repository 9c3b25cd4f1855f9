"""Where pinid keeps data and caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$PINID_CACHE_DIR`` or ``~/.cache/pinid``: corpora and image features live here."""
    env = os.environ.get("PINID_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pinid"
