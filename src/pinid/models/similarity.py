"""Vector spaces in which a pin is compared with training pins (for refinement and evidence).

A space is a list of row-aligned blocks whose concatenation has unit-norm rows, so the cosine
similarity of two pins is the sum of the blocks' dot products. Keeping blocks apart lets the
sparse tf-idf block and the dense image block each use their own fast product, without ever
materialising a dense copy of the sparse text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

SPACES = ("text", "image", "joint")


def row_norms(block) -> np.ndarray:
    if sp.issparse(block):
        return np.sqrt(np.asarray(block.multiply(block).sum(axis=1)).ravel())
    return np.sqrt(np.einsum("ij,ij->i", block, block))  # no squared copy of the block


def _scale_rows(block, factors: np.ndarray):
    """Rows times ``factors``, in float32 (a float64 intermediate of the training image block
    would cost its size twice over)."""
    factors = np.asarray(factors, np.float32)
    if sp.issparse(block):  # each stored value times its row's factor: no diagonal product
        block = sp.csr_matrix(block, dtype=np.float32, copy=True)
        block.data *= np.repeat(factors, np.diff(block.indptr))
        if not factors.all():
            block.eliminate_zeros()  # rows scaled to nothing store nothing
        return block
    return np.asarray(block, np.float32) * factors[:, None]


def _reciprocal(norms: np.ndarray) -> np.ndarray:
    """1 / norm, and 0 for a zero row (it stays zero)."""
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)


def unit_in_place(block: np.ndarray) -> np.ndarray:
    """Dense float32 rows scaled to unit length (zero rows stay zero), in place: ``_unit``'s
    result without a second copy of a training block (300 MB at the paper's scale)."""
    block *= _reciprocal(row_norms(block)).astype(np.float32)[:, None]
    return block


def _unit(block):
    return _scale_rows(block, _reciprocal(row_norms(block)))


def make_space(space: str, text_vectors, image_vectors: np.ndarray) -> list:
    """Blocks for ``space``: ``text`` (tf-idf), ``image`` (CNN) or ``joint`` (both, renormalised).

    In ``joint`` a pin missing one modality (zero vector) is compared on the other alone.
    """
    if space == "text":
        return [sp.csr_matrix(_unit(text_vectors))]
    if space == "image":
        return [_unit(image_vectors)]
    if space != "joint":
        raise ValueError(f"unknown similarity space {space!r}; valid: {', '.join(SPACES)}")
    text, image = _unit(text_vectors), _unit(image_vectors)
    norms = np.sqrt(row_norms(text) ** 2 + row_norms(image) ** 2)
    inverse = _reciprocal(norms)
    return [sp.csr_matrix(_scale_rows(text, inverse)), _scale_rows(image, inverse)]


def cosine(query_blocks: list, train_blocks: list) -> np.ndarray:
    """Dense (n_query, n_train) cosine similarities."""
    total = None
    for q, t in zip(query_blocks, train_blocks, strict=True):
        part = q @ t.T
        part = part.toarray() if sp.issparse(part) else np.asarray(part)
        total = part if total is None else total + part
    return total.astype(np.float32, copy=False)


def take_rows(blocks: list, rows: slice | np.ndarray) -> list:
    return [block[rows] for block in blocks]


class UserPins:
    """Training pins of one space grouped by user, so that a pin is compared only with the pins
    of its candidate users.

    Refinement and the re-ranker's similarity features need, for each pin, its most similar
    training pins among those of each of its top-k users: k users' pins rather than every
    training pin, one matrix product per user. The search is exact: k x pins-per-user x 1280
    multiply-adds per pin.
    """

    def __init__(self, train_blocks: list, train_y: np.ndarray, n_classes: int) -> None:
        train_y = np.asarray(train_y, dtype=np.int64)
        counts = np.bincount(train_y, minlength=n_classes)
        if (counts == 0).any():
            raise ValueError("every class needs training pins")
        # stable: within a user, pins keep their order, so ties go to the first pin as before
        self.order = np.argsort(train_y, kind="stable")
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        ordered = take_rows(train_blocks, self.order)
        mine = [slice(a, a + c) for a, c in zip(self.starts, counts, strict=True)]
        self.per_user = [take_rows(ordered, rows) for rows in mine]
        self.means = [_user_means(block, self.starts) for block in ordered]  # (users, dim)

    def nearest(self, query_blocks: list, candidates: np.ndarray, m: int) -> Nearest:
        """Each pin's ``m`` most similar training pins of each of its candidates (n, k)."""
        n, k = candidates.shape
        rows = np.repeat(np.arange(n), k)  # pair i * k + j: pin i, its candidate j
        similarity, pins = self.nearest_pairs(query_blocks, rows, candidates.ravel(), m)
        mean = np.take_along_axis(cosine(query_blocks, self.means), candidates, axis=1)
        return Nearest(similarity.reshape(n, k, m), pins.reshape(n, k, m), mean)

    def nearest_pairs(
        self, query_blocks: list, rows: np.ndarray, users: np.ndarray, m: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each pair (query row, user), that user's ``m`` training pins most similar to the
        row: similarities and indices (p, m), best first, NaN and -1 past the user's pins."""
        similarity = np.full((len(users), m), np.nan, np.float32)
        pins = np.full((len(users), m), -1, np.int64)
        by_user = np.argsort(users, kind="stable")
        present, first = np.unique(users[by_user], return_index=True)
        ends = np.append(first[1:], len(users))[: len(first)]  # none when there are no pairs
        for user, begin, end in zip(present, first, ends, strict=True):
            pairs = by_user[begin:end]
            S = cosine(take_rows(query_blocks, rows[pairs]), self.per_user[user])
            columns = _best_columns(S, min(m, S.shape[1]))
            width = columns.shape[1]
            similarity[pairs, :width] = np.take_along_axis(S, columns, axis=1)
            pins[pairs, :width] = self.order[self.starts[user] + columns]
        return similarity, pins


@dataclass
class Nearest:
    """Per pin and candidate: the nearest training pins' similarities and indices, best first
    (NaN and -1 past the user's pin count), and the mean similarity to all of that user's pins."""

    similarity: np.ndarray  # (n, k, m)
    pins: np.ndarray  # (n, k, m)
    mean: np.ndarray  # (n, k)


def _best_columns(S: np.ndarray, m: int) -> np.ndarray:
    """Each row's m largest columns, best first; equal values: the earlier column first."""
    if m == 1:  # argmax returns the first of equal maxima; argpartition promises no order
        return S.argmax(axis=1)[:, None]
    if m < S.shape[1]:
        columns = np.argpartition(-S, m - 1, axis=1)[:, :m]
    else:
        columns = np.broadcast_to(np.arange(S.shape[1]), S.shape)
    values = np.take_along_axis(S, columns, axis=1)
    return np.take_along_axis(columns, np.lexsort((columns, -values), axis=-1), axis=1)


def _user_means(block, starts: np.ndarray):
    """Each user's mean training vector (rows grouped by user from ``starts``): the mean
    similarity to a user's pins is the similarity to this mean."""
    counts = np.diff(np.append(starts, block.shape[0]))
    users = np.repeat(np.arange(len(starts)), counts)
    average = sp.csr_matrix(
        (1.0 / counts[users], (users, np.arange(block.shape[0]))),
        shape=(len(starts), block.shape[0]),
        dtype=np.float32,
    )
    means = average @ block
    return sp.csr_matrix(means) if sp.issparse(block) else np.asarray(means, np.float32)
