"""Features: the paper's text representation and ImageNet CNN image features, cached.

PyTorch's CPU allocator is told to use transparent huge pages before torch is imported: on
2 cores with glibc malloc, throughput otherwise collapses at larger batches (measured for
lite0 at batch 4 / 16 / 32: 96 / 81 / 59 images/s without, 131 / 117 / 123 with).
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
