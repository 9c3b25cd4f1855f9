"""Image features for many pins: cached, batched, decoding in parallel with inference.

Every stage that needs image features (``features``, ``experiment``, ``train``, ``predict``)
calls :class:`ImageFeatureExtractor`; there is no second path.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pinid.errors import DataError
from pinid.features import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_ENGINE,
    DEFAULT_EXTRACTOR,
    DEFAULT_FIT,
    ENGINES,
    MAX_FAILURE_RATE,
)
from pinid.features.cache import FeatureCache
from pinid.features.efficientnet import FEATURE_DIM, get_spec, style_dim
from pinid.features.engines import PRECISION, Engine, make_engine
from pinid.features.images import (
    DECODE_VERSION,
    UnreadableImage,
    check_image_bytes,
    decode_image,
    read_image_bytes,
)
from pinid.features.preprocess import PREPROCESS_VERSION, to_tensor
from pinid.features.specs import FITS
from pinid.paths import cache_dir

DECODE_THREADS = 2


@dataclass
class FeatureResult:
    """Features aligned with the input paths; rows of unreadable images are zero."""

    features: np.ndarray
    readable: np.ndarray
    unreadable: dict[int, str] = field(default_factory=dict)
    computed: int = 0
    from_cache: int = 0
    duplicates: int = 0
    """Pins whose image bytes equal another pin's in the same run: computed once, shared."""


@dataclass
class _Prepared:
    index: int
    sha256: str | None = None
    vector: np.ndarray | None = None
    tensor: object | None = None
    reason: str | None = None


STYLE_VERSION = 1
"""Which style statistics (``efficientnet.STYLE_STAGES``): part of the extractor id."""


class ImageFeatureExtractor:
    """ImageNet CNN features (1280-d, globally pooled, then style statistics) with a
    content-addressed disk cache."""

    def __init__(
        self,
        name: str = DEFAULT_EXTRACTOR,
        *,
        fit: str = DEFAULT_FIT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_root: Path | None = None,
        progress: bool = True,
        threads: int | None = None,
        style: bool = True,
        engine: str = DEFAULT_ENGINE,
    ) -> None:
        """``threads``: the CNN's threads (default: every core); a Dask worker that shares
        its machine with other workers takes its share. ``style``: the pooled features followed
        by style statistics of the same pass (:func:`~pinid.features.efficientnet.style_dim`
        wide); without it, the pooled features alone (what models of pinid 0.2 used).
        ``engine``: what runs the CNN (:mod:`~pinid.features.engines`), ``"onnx"`` or
        ``"torch"`` (the reference)."""
        self.spec = get_spec(name)
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
        self.engine = engine
        self.style = style
        self.feature_dim = FEATURE_DIM + (style_dim(self.spec) if style else 0)
        if fit not in FITS:
            raise ValueError(f"unknown fit {fit!r}; valid: {', '.join(FITS)}")
        self.fit = fit
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.threads = threads
        self.cache = FeatureCache(cache_root or cache_dir(), self.extractor_id, self.feature_dim)

    @cached_property
    def extractor_id(self) -> str:
        """Name, decoding, preprocessing, weights digest and engine: any change gives a fresh
        cache. The torch engine (the reference, and pinid's only one before 0.5) adds nothing,
        so its caches and the models trained with it keep their ids; any other engine adds its
        name and precision, so features of two engines never mix."""
        base = f"{self.spec.name}-{self.fit}-{DECODE_VERSION}{PREPROCESS_VERSION}-{self._digest}"
        base = f"{base}-style{STYLE_VERSION}" if self.style else base
        return base if self.engine == "torch" else f"{base}-{self.engine}-{PRECISION}"

    @cached_property
    def _digest(self) -> str:
        return hashlib.sha256(self.spec.weights_path().read_bytes()).hexdigest()[:12]

    @cached_property
    def _model(self) -> Engine:
        return make_engine(
            self.engine,
            self.spec,
            threads=self.threads,
            style=self.style,
            folder=self.cache.root / "engines",
            digest=self._digest,
        )

    def load(self) -> ImageFeatureExtractor:
        """Load the CNN now (it is otherwise loaded on the first image that needs it)."""
        self._model  # noqa: B018 -- cached_property: the access is the load
        return self

    def lookup(self, path: Path, index: int = 0) -> _Prepared:
        """Read and hash one image and look it up in the cache, without decoding: what a
        cluster's client checks before it sends work (``sha256`` is None when unreadable)."""
        return self._lookup(index, path)[0]

    def _lookup(self, index: int, path: Path) -> tuple[_Prepared, bytes]:
        item = _Prepared(index)
        try:
            data = read_image_bytes(path)
        except UnreadableImage as exc:
            item.reason = str(exc)
            return item, b""
        item.sha256 = hashlib.sha256(data).hexdigest()
        item.vector = self.cache.get(item.sha256)
        return item, data

    def _prepare(self, index: int, path: Path) -> _Prepared:
        item, data = self._lookup(index, path)
        if item.sha256 is None or item.vector is not None:
            return item
        try:
            item.tensor = to_tensor(decode_image(data, path.name), self.spec.resolution, self.fit)
        except UnreadableImage as exc:  # not cached: a fixed decoder should get another try
            item.reason = str(exc)
        return item

    def _prepared(self, paths: Sequence[Path]) -> Iterator[_Prepared]:
        """Decode ahead of the model in worker threads, in order, with bounded look-ahead."""
        lookahead = 4 * self.batch_size + 8
        with ThreadPoolExecutor(
            max_workers=DECODE_THREADS, thread_name_prefix="pinid-decode"
        ) as pool:
            pending: deque[Future] = deque()
            for index, path in enumerate(paths):
                pending.append(pool.submit(self._prepare, index, Path(path)))
                if len(pending) >= lookahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def features_of(self, data: bytes, name: str = "") -> np.ndarray:
        """One image's features from its bytes, or :class:`UnreadableImage`."""
        (result,) = self.features_of_many([(data, name)])
        if isinstance(result, UnreadableImage):
            raise result
        return result

    def features_of_many(
        self, uploads: Sequence[tuple[bytes, str]]
    ) -> list[np.ndarray | UnreadableImage]:
        """Each upload's (bytes, file name) features, or the :class:`UnreadableImage` it raised:
        one bad image fails alone. The CNN runs once for all the uncached ones (the service's
        micro-batches), with the features a run of each alone gives.

        The cache is read but never written: a service answering strangers' uploads must not
        let them fill its disk.
        """
        results: list[np.ndarray | UnreadableImage | None] = [None] * len(uploads)
        rows, tensors = [], []
        for row, (data, name) in enumerate(uploads):
            try:
                results[row] = self.cache.get(hashlib.sha256(check_image_bytes(data)).hexdigest())
                if results[row] is None:
                    tensors.append(to_tensor(decode_image(data, name), self.spec.resolution,
                                             self.fit))  # fmt: skip
                    rows.append(row)
            except UnreadableImage as exc:
                results[row] = exc
        if tensors:
            for row, vector in zip(rows, self._forward(tensors), strict=True):
                results[row] = vector
        return results

    def _forward(self, tensors: list) -> np.ndarray:
        return self._model(torch.stack(tensors).numpy())

    def extract(self, paths: Sequence[Path], *, what: str = "images") -> FeatureResult:
        """Features for ``paths`` (cache first); unreadable files get a reason, not an abort."""
        n = len(paths)
        result = FeatureResult(np.zeros((n, self.feature_dim), np.float32), np.zeros(n, bool))
        batch: list[_Prepared] = []
        waiting: dict[str, list[int]] = {}  # sha256 -> rows to fill once its batch has run
        done: dict[str, int] = {}  # sha256 -> a row computed in an earlier batch of this run

        def run_batch() -> None:
            vectors = self._forward([item.tensor for item in batch])
            for item, vector in zip(batch, vectors, strict=True):
                self.cache.put(item.sha256, vector)
                for row in waiting.pop(item.sha256):
                    result.features[row] = vector
                    result.readable[row] = True
                done[item.sha256] = item.index
            result.computed += len(batch)
            batch.clear()

        bar = tqdm(
            total=n, desc=f"features ({what})", unit="img", disable=None if self.progress else True
        )
        for item in self._prepared(paths):
            bar.update(1)
            if item.reason is not None:
                result.unreadable[item.index] = item.reason
            elif item.vector is not None:
                result.features[item.index] = item.vector
                result.readable[item.index] = True
                result.from_cache += 1
            elif item.sha256 in waiting:  # same bytes as an image already queued
                waiting[item.sha256].append(item.index)
                result.duplicates += 1
            elif item.sha256 in done:  # looked up ahead, before its twin's batch was cached
                result.features[item.index] = result.features[done[item.sha256]]
                result.readable[item.index] = True
                result.duplicates += 1
            else:
                waiting[item.sha256] = [item.index]
                batch.append(item)
                if len(batch) >= self.batch_size:
                    run_batch()
        if batch:
            run_batch()
        bar.close()
        return result


def check_failure_rate(
    unreadable: Mapping[int, str], names: Sequence[str], max_rate: float = MAX_FAILURE_RATE
) -> None:
    """Fail a run whose share of unreadable images (row -> reason) exceeds ``max_rate``."""
    n = len(names)
    if n and len(unreadable) / n > max_rate:
        examples = "; ".join(f"{names[i]}: {r}" for i, r in list(unreadable.items())[:3])
        raise DataError(
            f"{len(unreadable)} of {n} images unreadable "
            f"({len(unreadable) / n:.1%} > {max_rate:.0%} allowed), e.g. {examples}"
        )
