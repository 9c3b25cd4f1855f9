"""Features: the paper's text representation and ImageNet CNN image features, cached.

This module stays light (no torch import) so the CLI can list these names and defaults
without loading the model stack.

PyTorch's CPU allocator is told to use transparent huge pages before torch is imported: on
2 cores with glibc malloc, throughput otherwise collapses at larger batches.
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

EXTRACTOR_NAMES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
DEFAULT_EXTRACTOR = "efficientnet-lite0"
ENGINES = ("onnx", "torch")
DEFAULT_ENGINE = "onnx"
"""ONNX Runtime runs the CNN's forward pass about 1.8 x as fast as PyTorch eager on 2 CPU cores,
with the same features (cosine 1 - 2e-7); ``"torch"`` stays as the reference
(benchmarks/extract.py, docs/performance.md)."""
DEFAULT_FIT = "pad"
"""Pad to a square on white: clip art fills its frame and a centre crop would cut it."""
DEFAULT_BATCH_SIZE = 4
"""The best end-to-end batch measured on 2 cores (benchmarks/extract.py)."""
MAX_FAILURE_RATE = 0.05
DEFAULT_SHARD_SIZE = 128
"""Images per Dask task: a few seconds of CNN work each, many tasks to spread over the workers."""
