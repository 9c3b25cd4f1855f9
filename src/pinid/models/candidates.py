"""Beyond the paper: what the re-ranker knows about each of a pin's candidate users, and the
evidence shown with each.

The cascade's top-k users are the candidates (its recall@10 is far above its accuracy). For each
pin and candidate, the features are: the fused score and its position, every view's
probability and rank, how similar the pin is to the candidate's training pins in each space
(the best, the mean of the best three, the mean of all), and how many pins the candidate has.

A pin is compared only with its candidates' training pins, in the three spaces at once (one
pass per candidate user gives the statistics and the evidence). The image space is compared in
its :data:`PROJECTED_DIM` principal directions (the training pins'): the exact comparison over
every candidate's pins in 1280 dimensions capped answers near 6,500 pins/s on two cores. The
re-ranker learns from the same statistics it is given, and the evidence's similarity is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from pinid.models.similarity import SPACES, make_space, row_norms

SIMILARITY_STATS = ("max", "top3", "mean")
SEARCH_SPACES = ("text", "char", "image")
PROJECTED_DIM = 128
"""Image dimensions the search compares in; wider features are projected on the training
pins' principal directions (measured against the exact search: docs/performance.md)."""
COMMON_SHARE, MAX_COMMON = 0.01, 512
"""Text terms compared densely: those of more than 1% of the training pins, at most 512."""
CHUNK_SIMILARITIES = 1 << 22
"""Pair-to-pin similarities per space held at once (16 MB in float32)."""
COVARIANCE_ROWS = 16_384  # about (at most twice); principal directions need not be exact
_EPS = 1e-12


@dataclass
class Found:
    """Per pin and candidate: similarity statistics and, if asked for, the evidence."""

    stats: np.ndarray  # (n, k, len(SEARCH_SPACES), len(SIMILARITY_STATS))
    evidence: np.ndarray  # (n, k) the candidate's training pin most similar (-1: not asked)
    similarity: np.ndarray  # (n, k) its cosine similarity in the evidence space


class CandidateSearch:
    """Training pins of the word, character and image spaces, grouped by user.

    Parameters
    ----------
    words, chars : sparse matrix
        The training pins' tf-idf vectors (rows of zeros where a pin has no text).
    images : ndarray
        Their image vectors (zeros where a pin has no image).
    y : ndarray of int
        Their users' class indices.
    n_classes : int
    evidence_space : {"joint", "text", "image"}
        Where the evidence is the most similar pin (the paper's refinement space). In
        ``joint`` a pin given with one modality is compared in that modality's space.
    """

    def __init__(self, words, chars, images, y, n_classes: int, evidence_space: str = "joint"):
        if evidence_space not in SPACES:
            raise ValueError(f"unknown similarity space {evidence_space!r}; valid: {SPACES}")
        self.evidence_space = evidence_space
        y = np.asarray(y, dtype=np.int64)
        counts = np.bincount(y, minlength=n_classes)
        if (counts == 0).any():
            raise ValueError("every class needs training pins")
        # stable: within a user, pins keep their order, so ties go to the first pin
        self.order = np.argsort(y, kind="stable")
        self.bounds = np.concatenate([[0], np.cumsum(counts)])
        words, chars = (make_space("text", b, None)[0][self.order] for b in (words, chars))
        self.images = make_space("image", None, images)[0][self.order]
        has_text, has_image = row_norms(words) > 0, row_norms(self.images) > 0
        self.joint_scale = 1.0 / np.sqrt(np.maximum(has_text + has_image.astype(int), 1))
        self.basis = principal_directions(self.images, PROJECTED_DIM)
        self.columns = [_column_selectors(common_columns(b)) for b in (words, chars)]
        self.counts = counts
        self.user_of = np.repeat(np.arange(n_classes), counts)  # of each training pin, in order
        spaces = self._split(words, chars, self.images)
        self.dense = [dense for dense, _ in spaces]  # rows grouped by user
        self.rare = [None if rare is None else rare.T.tocsr() for _, rare in spaces]  # terms x pins

    def _split(self, words, chars, images) -> list[tuple[np.ndarray, sp.csr_matrix | None]]:
        """Each space as the search compares it: the text spaces' common terms dense and the
        rest sparse (a sparse product over terms most pins share is nearly dense and many times
        slower than BLAS on the same numbers), the image space projected."""
        blocks = zip((words, chars), self.columns, strict=True)
        out = [(sp.csr_matrix(block @ common).toarray(), sp.csr_matrix(block @ rare))
               for block, (common, rare) in blocks]  # fmt: skip
        out.append((images if self.basis is None else images @ self.basis, None))
        return out

    def search(
        self, words, chars, images: np.ndarray, candidates: np.ndarray, evidence: bool = False,
        chunk: int = 4096,
    ) -> Found:  # fmt: skip
        """Each pin's statistics per candidate (n, k) and space; with ``evidence``, also each
        candidate's training pin most similar to it. Queries are vectors as the training
        pins' (zero rows where a modality is not used); at most ``chunk`` of them, and
        :data:`CHUNK_SIMILARITIES` similarities per space, are compared at once."""
        n, k = candidates.shape
        found = Found(np.zeros((n, k, len(SEARCH_SPACES), len(SIMILARITY_STATS)), np.float32),
                      np.full((n, k), -1), np.zeros((n, k)))  # fmt: skip
        per_pin = int(self.counts[candidates].sum(axis=1).max()) if n else 1
        chunk = max(1, min(chunk, CHUNK_SIMILARITIES // per_pin))
        with _blas().limit(limits=1):  # many small products: threads cost more than they give
            for begin in range(0, n, chunk):
                rows = slice(begin, min(begin + chunk, n))
                queries = [make_space("text", words[rows], None)[0],
                           make_space("text", chars[rows], None)[0],
                           make_space("image", None, images[rows])[0]]  # fmt: skip
                self._search_chunk(queries, candidates[rows], evidence, found, rows)
        return found

    def _search_chunk(self, queries: list, candidates, evidence: bool, found: Found, rows):
        n, k = candidates.shape
        words, chars, images = queries
        use_text, use_image = self._evidence_modalities(words, images)
        scale = np.where(use_text & use_image, np.sqrt(0.5), 1.0)
        # the pairs (pin, candidate) grouped by user; each pair's similarities to its user's
        # pins are a segment of one buffer per space
        by_user = np.argsort(candidates.ravel(), kind="stable")
        pairs = _Pairs(candidates.ravel()[by_user], by_user // k, self.counts)
        S = [pairs.similarities(query, dense, rare, self.bounds, self.user_of)
             for query, dense, rare in zip(self._split(words, chars, images), self.dense,
                                           self.rare, strict=True)]  # fmt: skip
        stats = np.zeros((n * k, len(SEARCH_SPACES), len(SIMILARITY_STATS)), np.float32)
        best = np.zeros(n * k, np.int64)
        text_part, image_part = np.zeros(n * k), np.zeros(n * k)
        for user, group, segments in pairs.by_user():
            mine = pairs.pin[group]
            blocks = [similarity[segments].reshape(len(mine), -1) for similarity in S]
            placed = by_user[group]
            for space, block in enumerate(blocks):
                stats[placed, space] = _statistics(block)
            if evidence:
                a, b = self.bounds[user], self.bounds[user + 1]
                score = blocks[0] * use_text[mine, None] + blocks[2] * use_image[mine, None]
                both = (use_text & use_image)[mine]
                score[both] *= self.joint_scale[a:b]  # the training pins' joint norm
                chosen = score.argmax(axis=1)
                best[placed] = a + chosen
                text_part[placed] = blocks[0][np.arange(len(mine)), chosen]
                # the chosen pins' image part, exact: in full dimensions, one user at a time
                image_part[placed] = np.einsum("ij,ij->i", images[mine], self.images[a + chosen])
        found.stats[rows] = stats.reshape(n, k, *stats.shape[1:])
        if evidence:  # the chosen pins' similarity
            pin_of = np.repeat(np.arange(n), k)
            pin_scale = np.where((use_text & use_image)[pin_of], self.joint_scale[best], 1.0)
            similarity = scale[pin_of] * pin_scale * (
                text_part * use_text[pin_of] + image_part * use_image[pin_of])  # fmt: skip
            found.evidence[rows] = self.order[best].reshape(n, k)
            found.similarity[rows] = similarity.reshape(n, k)

    def _evidence_modalities(self, words, images) -> tuple[np.ndarray, np.ndarray]:
        """Per pin: is its text, its image compared for the evidence?"""
        has_text, has_image = row_norms(words) > 0, row_norms(images) > 0
        if self.evidence_space == "text":
            return np.ones_like(has_text), np.zeros_like(has_image)
        if self.evidence_space == "image":
            return np.zeros_like(has_text), np.ones_like(has_image)
        return has_text, has_image


class _Pairs:
    """Pairs (pin, candidate user) sorted by user, and where each pair's similarities to the
    user's training pins lie in a flat buffer: one segment per pair, the user's pins in order.
    One buffer per space replaces a sparse product per user and space, whose fixed cost was
    most of a single pin's answer."""

    def __init__(self, user: np.ndarray, pin: np.ndarray, counts: np.ndarray) -> None:
        self.user, self.pin = user, pin  # sorted by user, then pin
        self.width = counts[user]
        self.start = np.concatenate([[0], np.cumsum(self.width)[:-1]]).astype(np.int64)
        self.size = int(self.width.sum())

    def by_user(self):
        """Per user: the user, its pairs (a slice of the sorted pairs) and their segments (a
        slice of the buffer, the pairs' segments one after another)."""
        present, first = np.unique(self.user, return_index=True)
        ends = np.append(first[1:], len(self.user))
        for user, begin, end in zip(present, first, ends, strict=True):
            stop = self.start[end - 1] + self.width[end - 1]
            yield int(user), slice(begin, end), slice(int(self.start[begin]), int(stop))

    def similarities(self, query: tuple, dense: np.ndarray, rare_terms, bounds, user_of):
        """Every pair's dot products with its user's pins in a split space (see ``_split``):
        the dense part one product per user, the rare terms' one sparse product for all."""
        query_dense, query_rare = query
        out = np.empty(self.size, np.float32)
        for user, group, segments in self.by_user():
            block = out[segments].reshape(group.stop - group.start, -1)
            np.matmul(query_dense[self.pin[group]], dense[bounds[user] : bounds[user + 1]].T,
                      out=block)  # fmt: skip
        if query_rare is not None:
            shared = (query_rare @ rare_terms).tocoo()  # (pins, training pins): few non-zeros
            key = user_of[shared.col] * len(query_dense) + shared.row
            keys = self.user * len(query_dense) + self.pin  # ascending
            at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            hit = keys[at] == key  # the training pin's user is a candidate of the query pin
            column = shared.col[hit] - bounds[user_of[shared.col[hit]]]
            out[self.start[at[hit]] + column] += shared.data[hit]
        return out


def common_columns(block: sp.csr_matrix) -> np.ndarray:
    """The terms more than COMMON_SHARE of the rows use, at most MAX_COMMON of them (a mask)."""
    used_by = np.bincount(block.indices, minlength=block.shape[1])
    common = np.zeros(block.shape[1], bool)
    common[np.argsort(-used_by, kind="stable")[:MAX_COMMON]] = True
    return common & (used_by > COMMON_SHARE * block.shape[0])


def _column_selectors(common: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Matrices that pick the common and the other columns: a product with them costs the
    non-zeros, where scipy's column indexing of a wide matrix costs far more."""

    def selector(mask: np.ndarray) -> sp.csr_matrix:
        columns = np.flatnonzero(mask)
        ones = np.ones(len(columns), np.float32)
        return sp.csr_matrix((ones, (columns, np.arange(len(columns)))),
                             shape=(len(mask), len(columns)))  # fmt: skip

    return selector(common), selector(~common)


@cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries loaded, found once: finding them took longer than a pin's search."""
    return ThreadpoolController()


def _statistics(similarity: np.ndarray) -> np.ndarray:
    """(pairs, 3): each row's best, mean of the best three (all when fewer) and mean."""
    best3 = similarity if similarity.shape[1] <= 3 else -np.partition(-similarity, 2, axis=1)[:, :3]
    return np.column_stack([similarity.max(axis=1), best3.mean(axis=1), similarity.mean(axis=1)])


def principal_directions(vectors: np.ndarray, dim: int) -> np.ndarray | None:
    """(features, ``dim``): the ``dim`` directions that keep most of the rows' dot products
    (top eigenvectors of their second moment, not centred: dot products include the mean);
    None when the vectors are no wider than ``dim``."""
    if vectors.shape[1] <= dim:
        return None
    sample = vectors[:: max(1, len(vectors) // COVARIANCE_ROWS)].astype(np.float64)
    _, directions = np.linalg.eigh(sample.T @ sample)
    return np.ascontiguousarray(directions[:, ::-1][:, :dim], dtype=np.float32)


def ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of every user in every row (0 = highest score)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(scores.shape[1])[None, :], axis=1)
    return out


def candidate_features(
    fused: np.ndarray,
    candidates: np.ndarray,
    views: dict[str, np.ndarray],
    similarity: np.ndarray,
    log_counts: np.ndarray,
    has_text: np.ndarray,
    has_image: np.ndarray,
) -> np.ndarray:
    """(n * k, d) features, rows pin-major: pin 0's k candidates, then pin 1's, ..."""
    n, k = candidates.shape
    rows = np.arange(n)[:, None]
    columns = [np.log(fused[rows, candidates] + _EPS), np.broadcast_to(np.arange(k), (n, k))]
    for probabilities in views.values():
        columns.append(np.log(probabilities[rows, candidates] + _EPS))
        columns.append(np.log1p(ranks(probabilities)[rows, candidates]))
    columns.extend(similarity[:, :, s, j] for s in range(similarity.shape[2])
                   for j in range(similarity.shape[3]))  # fmt: skip
    columns.append(log_counts[candidates])
    columns.append(np.broadcast_to(has_text[:, None], (n, k)))
    columns.append(np.broadcast_to(has_image[:, None], (n, k)))
    return np.stack([np.asarray(c, np.float64) for c in columns], axis=-1).reshape(n * k, -1)
