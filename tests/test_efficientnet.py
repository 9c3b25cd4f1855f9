"""EfficientNet-Lite extractor: the shipped ImageNet weights load and classify known images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pinid.features import EXTRACTOR_NAMES
from pinid.features.efficientnet import FeatureNet, _same_padding, build_model, style_dim
from pinid.features.preprocess import PREPROCESS_VERSION, to_tensor
from pinid.features.specs import get_spec

skdata = pytest.importorskip("skimage.data")

TABBY_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee())]


@pytest.fixture(scope="module")
def lite0() -> FeatureNet:
    return build_model("efficientnet-lite0")


@pytest.fixture(scope="module")
def lite0_plain() -> FeatureNet:
    return build_model("efficientnet-lite0", fold_bn=False, channels_last=False)


def _batch(images: list[Image.Image], resolution: int, fit: str = "crop") -> torch.Tensor:
    return torch.stack([to_tensor(img, resolution, fit=fit) for img in images])


@pytest.mark.parametrize(("name", "blocks"), list(zip(EXTRACTOR_NAMES, (16, 21, 21), strict=True)))
def test_every_variant_loads_strict_and_recognises_cat_and_espresso(
    name: str, blocks: int, photos: list[Image.Image]
) -> None:
    model = build_model(name)  # load_state_dict(strict=True) raises on any missing/extra key
    assert len(model._blocks) == blocks
    with torch.inference_mode():
        probs = model.logits(_batch(photos, model.spec.resolution)).softmax(dim=1)
    cat, coffee = probs
    assert int(cat.argmax()) in TABBY_CLASSES
    assert float(cat[TABBY_CLASSES.start : TABBY_CLASSES.stop].sum()) > 0.7
    assert int(coffee.argmax()) == ESPRESSO


def test_lite0_matches_reference_probabilities(lite0: FeatureNet, photos) -> None:
    """ENGINEERING.md's numbers: cat mostly 282/285/281, espresso 0.95."""
    with torch.inference_mode():
        cat, coffee = lite0.logits(_batch(photos, 224)).softmax(dim=1)
    top3 = {int(i) for i in cat.topk(3).indices}
    assert top3 == {281, 282, 285}
    assert float(cat[281:286].sum()) > 0.85
    assert float(coffee[ESPRESSO]) > 0.9


def test_features_are_finite_float32_rows_independent_of_batch(lite0: FeatureNet, photos) -> None:
    x = _batch([*photos, photos[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT)], 224, fit="pad")
    with torch.inference_mode():
        feats = lite0(x)
        alone = lite0(x[1:2])
    assert feats.shape == (3, 1280)
    assert feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    assert (feats >= 0).all() and (feats <= 6).all()  # mean of ReLU6 outputs
    torch.testing.assert_close(alone[0], feats[1], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(feats[0], feats[1])


def test_style_statistics_come_from_the_same_pass_after_the_pooled_features(
    lite0: FeatureNet, photos
) -> None:
    batch = _batch(photos, 224, fit="pad")
    with torch.inference_mode():
        pooled, both = lite0(batch), lite0.features(batch, style=True)
    width = style_dim(get_spec("efficientnet-lite0"))
    assert width == 2 * (24 + 40 + 112 + 320)  # mean and deviation at strides 4, 8, 16, 32
    assert both.shape == (2, 1280 + width) and torch.equal(both[:, :1280], pooled)
    means, stds = both[:, 1280 : 1280 + 24], both[:, 1280 + 24 : 1280 + 48]
    assert (stds >= 0).all() and not torch.equal(means[0], means[1])  # two different pictures
    assert style_dim(get_spec("efficientnet-lite2")) > width  # wider channels


def test_folded_channels_last_model_agrees_with_plain_model(
    lite0: FeatureNet, lite0_plain: FeatureNet, photos
) -> None:
    assert lite0.folded and not lite0_plain.folded
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in lite0.modules())
    x = _batch(photos, 224)
    with torch.inference_mode():
        torch.testing.assert_close(lite0(x), lite0_plain(x), atol=1e-4, rtol=0)
        torch.testing.assert_close(lite0.logits(x), lite0_plain.logits(x), atol=1e-4, rtol=0)


def test_odd_sizes_use_tf_same_padding() -> None:
    assert _same_padding(224, 3, 2) == (0, 1)  # extra row/column goes after
    assert _same_padding(65, 5, 2) == (2, 2)
    assert _same_padding(7, 3, 1) == (1, 1)


def test_unknown_extractor_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="efficientnet-lite0, efficientnet-lite1"):
        build_model("efficientnet-b0")
    assert [get_spec(n).resolution for n in EXTRACTOR_NAMES] == [224, 240, 260]


def _framed(width: int, height: int, border: int) -> Image.Image:
    """Mid-grey picture with a black frame of ``border`` px on every side."""
    arr = np.full((height, width, 3), 128, np.uint8)
    arr[:border], arr[-border:], arr[:, :border], arr[:, -border:] = 0, 0, 0, 0
    return Image.fromarray(arr)


@pytest.mark.parametrize("fit", ["crop", "pad"])
@pytest.mark.parametrize("size", [(300, 200), (200, 300), (64, 64), (1, 5)])
def test_preprocess_shape_dtype_and_range(fit: str, size: tuple[int, int]) -> None:
    t = to_tensor(Image.new("RGB", size, (10, 200, 30)), 224, fit=fit)
    assert t.shape == (3, 224, 224)
    assert t.dtype == torch.float32
    assert t.is_contiguous()
    assert float(t.min()) >= -1.0 and float(t.max()) <= 1.0


def test_pad_fills_with_white_which_maps_to_one() -> None:
    t = to_tensor(Image.new("RGB", (200, 100), (0, 0, 0)), 224, fit="pad")
    assert torch.equal(t[:, :20, :], torch.ones(3, 20, 224))  # white bands above and below
    assert torch.equal(t[:, -20:, :], torch.ones(3, 20, 224))
    assert torch.equal(t[:, 100:124, :], torch.full((3, 24, 224), -1.0))  # black subject: -1


def test_pad_keeps_the_whole_picture_while_crop_cuts_the_border() -> None:
    img = _framed(300, 200, border=10)
    padded = to_tensor(img, 224, fit="pad")
    cropped = to_tensor(img, 224, fit="crop")
    black = -1.0 + 1e-3
    assert float(padded[:, :, :3].min()) <= black  # the left frame survives padding
    assert float(cropped.min()) > black  # crop of 224/256 of the short side drops the frame
    middle = 128 / 127.5 - 1
    assert abs(float(cropped[:, 112, 112].mean()) - middle) < 1e-3


def test_preprocess_is_rgb_and_flattens_transparency_onto_white() -> None:
    red = to_tensor(Image.new("RGB", (50, 50), (255, 0, 0)), 32, fit="crop")
    assert float(red[0].mean()) == pytest.approx(1.0)
    assert float(red[2].mean()) == pytest.approx(-1.0)
    clear = to_tensor(Image.new("RGBA", (50, 50), (0, 0, 0, 0)), 32, fit="pad")
    assert torch.equal(clear, torch.ones(3, 32, 32))
    grey = to_tensor(Image.new("L", (50, 50), 0), 32, fit="pad")
    assert torch.equal(grey, torch.full((3, 32, 32), -1.0))


def test_preprocess_rejects_unknown_fit() -> None:
    with pytest.raises(ValueError, match="crop, pad"):
        to_tensor(Image.new("RGB", (8, 8)), 32, fit="stretch")
    assert PREPROCESS_VERSION
