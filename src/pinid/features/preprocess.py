"""Image -> input tensor exactly as the EfficientNet-Lite ImageNet weights expect it.

The TF checkpoints were trained on RGB scaled to [-1, 1] with ``(x - 127.5) / 127.5`` (ImageNet
mean/std normalisation measurably hurts them) and evaluated on a centre crop of res/(res+32) of the
short side. Clip art usually fills the whole frame, so cropping would cut the subject; ``"pad"``
keeps it by padding to a square on white instead. Bump ``PREPROCESS_VERSION`` whenever the output
of ``to_tensor`` changes for any input: it is part of the feature cache key.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pinid.features.images import to_rgb
from pinid.features.specs import FITS

PREPROCESS_VERSION = "v1"

CROP_PADDING = 32
_WHITE = (255, 255, 255)


def _crop_box(width: int, height: int, resolution: int) -> tuple[int, int, int, int]:
    """Centred square of res/(res+32) of the short side, as in the TF evaluation pipeline."""
    side = max(1, int(resolution / (resolution + CROP_PADDING) * min(width, height)))
    left = (width - side + 1) // 2
    top = (height - side + 1) // 2
    return left, top, left + side, top + side


def _pad_to_square(img: Image.Image) -> Image.Image:
    width, height = img.size
    if width == height:
        return img
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), _WHITE)
    canvas.paste(img, ((side - width) // 2, (side - height) // 2))
    return canvas


def to_tensor(img: Image.Image, resolution: int, fit: str = "pad") -> torch.Tensor:
    """float32 (3, resolution, resolution) in [-1, 1], RGB, ready to stack into a batch.

    ``fit="crop"`` reproduces the ImageNet evaluation crop (use it for photos and to check the
    weights); ``fit="pad"`` pads to a square on white so the whole picture is kept.
    """
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; valid: {', '.join(FITS)}")
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    img = to_rgb(img)
    size = (resolution, resolution)
    if fit == "crop":
        # resize(box=...) crops and resamples in one pass, without an intermediate copy.
        box = _crop_box(img.width, img.height, resolution)
        img = img.resize(size, Image.Resampling.BICUBIC, box=box)
    else:
        img = _pad_to_square(img).resize(size, Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32)
    arr = (arr - 127.5) / 127.5
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
