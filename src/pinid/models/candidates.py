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

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from pinid.models.similarity import SPACES, make_space, row_norms

SIMILARITY_STATS = ("max", "top3", "mean")
SEARCH_SPACES = ("text", "char", "image")
PROJECTED_DIM = 128
"""Image dimensions the search compares in; wider features are projected on the training
pins' principal directions (measured against the exact search: docs/performance.md)."""
COMMON_SHARE, MAX_COMMON = 0.01, 512
"""Text terms compared densely: those of more than 1% of the training pins, at most 512."""
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
        spaces = self._split(words, chars, self.images)
        self.per_user = [  # per user and space: (dense part, sparse part transposed or None)
            [(dense[a:b], None if rare is None else rare[a:b].T.tocsr()) for dense, rare in spaces]
            for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True)
        ]

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
        pins' (zero rows where a modality is not used)."""
        n, k = candidates.shape
        found = Found(np.zeros((n, k, len(SEARCH_SPACES), len(SIMILARITY_STATS)), np.float32),
                      np.full((n, k), -1), np.zeros((n, k)))  # fmt: skip
        with threadpool_limits(1):  # many small products: threads cost more than they give
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
        split = self._split(words, chars, images)
        use_text, use_image = self._evidence_modalities(words, images)
        scale = np.where(use_text & use_image, np.sqrt(0.5), 1.0)
        stats = np.zeros((n * k, len(SEARCH_SPACES), len(SIMILARITY_STATS)), np.float32)
        best = np.zeros(n * k, np.int64)
        text_part, image_part = np.zeros(n * k), np.zeros(n * k)
        pin_of = np.repeat(np.arange(n), k)  # pair i * k + j: pin i, its candidate j
        flat = candidates.ravel()
        by_user = np.argsort(flat, kind="stable")
        present, first = np.unique(flat[by_user], return_index=True)
        for user, begin, end in zip(present, first, np.append(first[1:], len(flat)), strict=True):
            pairs = by_user[begin:end]
            mine = pin_of[pairs]
            S = [_similarity(query, mine, train)
                 for query, train in zip(split, self.per_user[user], strict=True)]  # fmt: skip
            for space, similarity in enumerate(S):
                stats[pairs, space] = _statistics(similarity)
            if evidence:
                a, b = self.bounds[user], self.bounds[user + 1]
                score = S[0] * use_text[mine, None] + S[2] * use_image[mine, None]
                both = (use_text & use_image)[mine]
                score[both] *= self.joint_scale[a:b]  # the training pins' joint norm
                best[pairs] = a + score.argmax(axis=1)
                text_part[pairs] = S[0][np.arange(len(pairs)), best[pairs] - a]
                # the chosen pins' image part, exact: in full dimensions, one user at a time
                image_part[pairs] = np.einsum("ij,ij->i", images[mine], self.images[best[pairs]])
        found.stats[rows] = stats.reshape(n, k, *stats.shape[1:])
        if evidence:  # the chosen pins' similarity
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


def _similarity(query: tuple, rows: np.ndarray, train: tuple) -> np.ndarray:
    """Dense (rows, the user's pins) dot products of a split space (see ``_split``)."""
    (query_dense, query_rare), (train_dense, train_rare) = query, train
    out = query_dense[rows] @ train_dense.T
    if train_rare is not None:
        out += (query_rare[rows] @ train_rare).toarray()
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
