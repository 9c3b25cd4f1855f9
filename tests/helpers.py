"""Small helpers shared by several test modules."""

from __future__ import annotations

import pytest


def uncertain_text(pins: list[dict], top_score) -> str:
    """Two users' words in one text, for which the model's top probability is below 1."""
    for a in pins:
        for b in pins:
            text = f"{a['text']} {b['text']}"
            if a["user"] < b["user"] and top_score(text) < 1.0:
                return text
    pytest.fail("the model is certain of every mixed text")
