"""What runs the CNN's forward pass: PyTorch eager (the reference) or ONNX Runtime (faster).

ONNX Runtime runs EfficientNet-Lite's forward pass about 1.8 x as fast as PyTorch eager on 2 CPU
cores (``benchmarks/extract.py``; end to end less, as decoding shares the cores), in float32
with the same features to a cosine of 1 - 2e-7, bitwise the same for 1-3 threads and every
batch size measured. Its graph is exported from the same shipped weights on first use and kept
in the cache folder, named by the weights' digest: no model file is committed or downloaded.
Both engines take a float32 (N, 3, res, res) batch from ``preprocess.to_tensor`` and give
(N, 1280 + style_dim) features, the pooled features first.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pinid._atomic import atomic_open
from pinid.errors import PinidError
from pinid.features.efficientnet import build_model
from pinid.features.specs import ExtractorSpec, get_spec

PRECISION = "fp32"
"""Reduced precision is left out: as measured for issue 20, bf16 (OpenVINO) and int8 move
features too far from the reference (cosine 0.996 and 0.93; docs/performance.md)."""
EXPORT_VERSION = 1
"""Part of the exported file's name: bump when the export (opset, exporter, graph) changes."""


class Engine(Protocol):
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchEngine:
    """PyTorch eager on the BN-folded, channels-last model: the reference."""

    def __init__(self, spec: ExtractorSpec, *, threads: int, style: bool) -> None:
        torch.set_num_threads(threads)
        self.model = build_model(spec.name)
        self.style = style

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.features(torch.from_numpy(batch), self.style).float().numpy()


class OnnxEngine:
    """ONNX Runtime on the CPU; the graph always gives the style statistics (they cost little)
    and pooled-only extractors keep the first columns."""

    def __init__(
        self, spec: ExtractorSpec, *, threads: int, style: bool, folder: Path, digest: str
    ) -> None:
        import onnxruntime as ort

        self.path = Path(folder) / f"{spec.name}-{digest}-export{EXPORT_VERSION}.onnx"
        self.width = None if style else spec.feature_dim
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle CNN threads sleep instead of spinning: the decoding threads need the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception:  # not exported yet, or damaged (a power cut): export it (again)
            graph = _exported(spec.name, digest)
            # a full or read-only disk: the graph is used from memory, exported again next time
            with contextlib.suppress(PinidError, OSError), atomic_open(self.path, "wb") as fh:
                fh.write(graph)
            session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.session = session
        self.input = session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        features = self.session.run(None, {self.input: np.ascontiguousarray(batch, np.float32)})
        return features[0][:, : self.width]


class _Features(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x, style=True)


@lru_cache(maxsize=2)
def _exported(name: str, digest: str) -> bytes:
    """The graph of extractor ``name`` (weights ``digest``), exported once per process."""
    return export_onnx(get_spec(name))


def export_onnx(spec: ExtractorSpec) -> bytes:
    """The BN-folded model as an ONNX graph, batch axis dynamic (about 12 s for lite0)."""
    model = _Features(build_model(spec.name, channels_last=False)).eval()
    example = torch.zeros(2, 3, spec.resolution, spec.resolution)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it names every torchvision op it cannot find
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's own deprecation notices
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=["images"],
                output_names=["features"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)
    buffer = io.BytesIO()
    program.save(buffer)
    return buffer.getvalue()


def make_engine(
    engine: str, spec: ExtractorSpec, *, threads: int | None, style: bool, folder: Path, digest: str
) -> Engine:
    """The engine named ``engine`` with ``threads`` CNN threads (default: every core)."""
    threads = threads or os.cpu_count() or 1
    if engine == "torch":
        return TorchEngine(spec, threads=threads, style=style)
    return OnnxEngine(spec, threads=threads, style=style, folder=folder, digest=digest)
