"""Vector spaces in which a pin is compared with training pins (for refinement and evidence).

A space is a list of row-aligned blocks whose concatenation has unit-norm rows, so the cosine
similarity of two pins is the sum of the blocks' dot products. Keeping blocks apart lets the
sparse tf-idf block and the dense image block each use their own fast product, without ever
materialising a dense copy of the sparse text.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SPACES = ("text", "image", "joint")


def _row_norms(block) -> np.ndarray:
    if sp.issparse(block):
        return np.sqrt(np.asarray(block.multiply(block).sum(axis=1)).ravel())
    return np.linalg.norm(block, axis=1)


def _scale_rows(block, factors: np.ndarray):
    if sp.issparse(block):
        return sp.diags(factors.astype(np.float32)) @ block.astype(np.float32)
    return (block * factors[:, None]).astype(np.float32)


def _unit(block):
    norms = _row_norms(block)
    return _scale_rows(block, np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0))


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
    norms = np.sqrt(_row_norms(text) ** 2 + _row_norms(image) ** 2)
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
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

    Refinement and the re-ranker's similarity features need, for each pin, the similarities to
    the training pins of its top-k users alone: k users' pins rather than every training pin
    (at the paper's scale 10 of 117 users), as one matrix product per user.
    """

    def __init__(self, train_blocks: list, train_y: np.ndarray, n_classes: int) -> None:
        train_y = np.asarray(train_y, dtype=np.int64)
        counts = np.bincount(train_y, minlength=n_classes)
        if (counts == 0).any():
            raise ValueError("every class needs training pins")
        # stable: within a user, pins keep their order, so ties go to the first pin as before
        self.order = np.argsort(train_y, kind="stable")
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.counts = counts
        ordered = take_rows(train_blocks, self.order)
        self.per_user = [
            [block[start : start + count] for block in ordered]
            for start, count in zip(self.starts, counts, strict=True)
        ]

    def compare(self, query_blocks: list, candidates: np.ndarray):
        """Yield ``(user, pairs, S)`` for each user among ``candidates`` (n, k): ``pairs`` are
        flat indices into ``candidates`` where that user stands, ``S`` the cosine similarities
        of those pins (rows) to the user's training pins (columns, in :attr:`order`)."""
        flat = candidates.ravel()
        by_user = np.argsort(flat, kind="stable")
        users, first = np.unique(flat[by_user], return_index=True)
        bounds = np.append(first, len(flat))
        k = candidates.shape[1]
        for user, begin, end in zip(users, bounds[:-1], bounds[1:], strict=True):
            pairs = by_user[begin:end]
            yield user, pairs, cosine(take_rows(query_blocks, pairs // k), self.per_user[user])

    def training_pin(self, user: int, column: np.ndarray) -> np.ndarray:
        """Index, among the training pins as given, of the user's ``column``-th pin in compare."""
        return self.order[self.starts[user] + column]
