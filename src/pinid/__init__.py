"""pinid: which user posted this pin (an image plus a short text)?

The Python API: :func:`train`, :func:`load`, :class:`Model` (``identify``, ``identify_many``,
``links``), the :class:`Answer` every answer is (a batch's, :class:`Answers`), :func:`link`
(accounts that look alike, with :class:`AccountPair`) and :class:`PinClassifier` for
scikit-learn. They are imported on first use, so ``import pinid`` (and the CLI) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.5.0"
__all__ = ["AccountPair", "Answer", "Answers", "Candidate", "Evidence", "Model", "PinClassifier",
           "link", "load", "train"]  # fmt: skip

_HOMES = {
    "AccountPair": "pinid.models.answer",
    "Answer": "pinid.models.answer",
    "Answers": "pinid.models.answer",
    "Candidate": "pinid.models.answer",
    "Evidence": "pinid.models.answer",
    "Model": "pinid.api",
    "PinClassifier": "pinid.api",
    "link": "pinid.api",
    "load": "pinid.api",
    "train": "pinid.api",
}

if TYPE_CHECKING:
    from pinid.api import Model, PinClassifier, link, load, train
    from pinid.models.answer import AccountPair, Answer, Answers, Candidate, Evidence


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'pinid' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
