"""Phase 2 of the paper: re-weight each pin's top users by their best-matching training pin.

For a pin and each of its top-k users u (by the fused scores r), l_u is the maximum cosine
similarity between the pin and u's training pins, and r_u <- r_u * l_u; the answer is the
argmax over those k. The most similar training pin is also the *evidence* for the candidate.
Each pin is compared only with its k candidates' training pins, one matrix product per candidate
user (:class:`UserPins`); never a Python loop over pins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator

from pinid.models.ranking import top_k
from pinid.models.similarity import UserPins, take_rows

TOP_K = 10
SIMILARITY_CEILING = 1.001
"""Above any similarity of two unit (or zero) rows, float32 rounding included (at most about
1e-4 over 1 for 1,280 dimensions), so ``fused * SIMILARITY_CEILING`` bounds a refined score."""


@dataclass
class Refined:
    """Per pin, ``k`` candidates best first: user indices, refined and fused scores, evidence."""

    users: np.ndarray  # (n, k) class indices, ordered by refined score
    scores: np.ndarray  # (n, k) r_u * l_u
    fused: np.ndarray  # (n, k) r_u before refinement
    evidence: np.ndarray  # (n, k) index of the most similar training pin of that user
    similarity: np.ndarray  # (n, k) l_u

    @classmethod
    def gather(cls, parts: list[tuple[np.ndarray, Refined]], n: int) -> Refined:
        """One result from results for disjoint sets of rows."""
        fields = ("users", "scores", "fused", "evidence", "similarity")
        k = parts[0][1].users.shape[1]
        out = cls(*(np.empty((n, k), getattr(parts[0][1], f).dtype) for f in fields))
        for rows, part in parts:
            for f in fields:
                getattr(out, f)[rows] = getattr(part, f)
        return out


class SimilarityRefiner(BaseEstimator):
    """Stores the training pins of a similarity space; ``refine`` re-ranks fused scores.

    Parameters
    ----------
    top_k : int
        How many of each pin's best fused users are re-weighted.
    chunk_size : int
        Pins refined per pass: bounds the copies of their query rows (16,384 x 1,280 float32:
        84 MB), while larger passes give each candidate user's product more rows.

    Attributes
    ----------
    users_ : UserPins
        The training pins, grouped by user.
    """

    def __init__(self, top_k: int = TOP_K, chunk_size: int = 16_384) -> None:
        self.top_k = top_k
        self.chunk_size = chunk_size

    def fit(self, train_blocks: list, y: np.ndarray) -> SimilarityRefiner:
        """``y`` are class indices (0..n_classes-1) of the training pins; every class has pins."""
        y = np.asarray(y, dtype=np.int64)
        self.users_ = UserPins(train_blocks, y, int(y.max()) + 1)
        return self

    def refine(self, scores: np.ndarray, query_blocks: list) -> Refined:
        n, n_classes = scores.shape
        k = min(self.top_k, n_classes)
        out = Refined(
            *(np.empty((n, k), dtype=t) for t in (np.int64, float, float, np.int64, float))
        )
        for start in range(0, n, self.chunk_size):
            rows = slice(start, min(n, start + self.chunk_size))
            self._refine_chunk(scores[rows], take_rows(query_blocks, rows), k, out, rows)
        return out

    def best(self, scores: np.ndarray, query_blocks: list) -> np.ndarray:
        """Each pin's refined top user (a class index): ``refine(...).users[:, 0]``, computed for
        fewer candidates. ``scores`` must be non-negative (the cascade's are probabilities).

        A candidate's refined score r_u * l_u is at most r_u (l_u is a cosine), so once the
        fused leader's refined score is known, the candidates whose fused score is below it
        cannot come first and need no similarity. Candidates whose refined scores tie exactly
        (equal fused scores, identical training pins) may be ordered differently than by
        ``refine``: a float32 product's last bit depends on the other rows computed with it,
        in ``refine`` too.
        """
        if (scores < 0).any():
            raise ValueError("refinement's bound needs non-negative scores")
        n, n_classes = scores.shape
        k = min(self.top_k, n_classes)
        out = np.empty(n, np.int64)
        for start in range(0, n, self.chunk_size):
            rows = slice(start, min(n, start + self.chunk_size))
            out[rows] = self._best_chunk(scores[rows], take_rows(query_blocks, rows), k)
        return out

    def _best_chunk(self, scores: np.ndarray, query_blocks: list, k: int) -> np.ndarray:
        top = top_k(scores, k)
        fused = np.take_along_axis(scores, top, axis=1)
        refined = np.full(fused.shape, -np.inf)
        queries = np.arange(len(top))
        leader = self.users_.nearest_pairs(query_blocks, queries, top[:, 0], 1)[0][:, 0]
        refined[:, 0] = fused[:, 0] * leader.astype(float)
        # the others whose bound reaches the leader's refined score
        rows, columns = np.nonzero(fused[:, 1:] * SIMILARITY_CEILING >= refined[:, :1])
        columns += 1
        similarity = self.users_.nearest_pairs(query_blocks, rows, top[rows, columns], 1)[0]
        refined[rows, columns] = fused[rows, columns] * similarity[:, 0].astype(float)
        # the first of refine's order: by refined score, ties by the fused score
        first = np.lexsort((-fused, -refined), axis=-1)[:, 0]
        return top[queries, first]

    def _refine_chunk(self, scores, query_blocks, k, out: Refined, rows: slice) -> None:
        top = top_k(scores, k)
        nearest = self.users_.nearest(query_blocks, top, 1)
        best_sim = nearest.similarity[:, :, 0].astype(float)
        best_pin = nearest.pins[:, :, 0]
        fused = np.take_along_axis(scores, top, axis=1)
        refined = fused * best_sim  # r_u <- r_u * l_u (pinid's spaces are non-negative)
        # by refined score; ties (e.g. every similarity 0) by the fused score
        order = np.lexsort((-fused, -refined), axis=-1)
        for target, values in (
            (out.users, top),
            (out.scores, refined),
            (out.fused, fused),
            (out.evidence, best_pin),
            (out.similarity, best_sim),
        ):
            target[rows] = np.take_along_axis(values, order, axis=1)
