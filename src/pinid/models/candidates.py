"""Beyond the paper: what the re-ranker knows about each of a pin's candidate users, and the
evidence shown with each.

The cascade's top-k users are the candidates (its recall@10 is far above its accuracy). For each
pin and candidate, the features are: the fused score and its position, every view's
probability and rank, how similar the pin is to the candidate's training pins in each space
(the best, the mean of the best three, the mean of all), and how many pins the candidate has.

A pin is compared only with its candidates' training pins, in the search's spaces at once
(words and image; characters too where asked), the statistics and the evidence from one pass
over those similarities; on the terms few training pins use, only with the candidates' pins
that share one, found in the terms' postings by user.
The image space is compared in at most :data:`PROJECTED_DIM` principal directions (the
training pins'): the exact comparison over every candidate's pins in 1280 dimensions capped
answers near 6,500 pins/s on two cores. The re-ranker learns from the same statistics it is
given, and the evidence's similarity is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import scipy.sparse as sp

from pinid.models.gram import principal_axes
from pinid.models.similarity import SPACES, make_space, row_norms, unit_in_place
from pinid.models.threads import blas_threads, one_thread, side_by_side

SIMILARITY_STATS = ("max", "top3", "mean")
SEARCH_SPACES = ("text", "char", "image")
"""Every space a search may compare in; a search without the character space compares in
the others, in this order (:attr:`CandidateSearch.spaces`)."""
PROJECTED_DIM = 128
"""Most image dimensions the search compares in; wider features are projected on the
training pins' principal directions (measured against the exact search: docs/performance.md),
fewer when the pins span fewer."""
COMMON_SHARE, MAX_COMMON = 0.01, 512
"""Text terms compared densely: those of more than 1% of the training pins, at most 512."""
PIN_CHUNK = 4096
"""Pins searched at once: their pairs' rare-term products are found together."""
ITEM_SIMILARITIES = 1 << 21
"""Similarities of a space that one user's pairs compare at once (8 MB in float32); as many
of those at once as BLAS may use threads."""
HITS_PAIRS = 8192
"""Pairs whose rare-term hits are found at once (the lookup's arrays: at the paper's scale
about 30 terms a pair, and 30 hits)."""
COVARIANCE_ROWS = 16_384  # about (at most twice); principal directions need not be exact
_EPS = 1e-12


@dataclass
class Found:
    """Per pin and candidate: similarity statistics and, if asked for, the evidence."""

    stats: np.ndarray  # (n, k, len(search.spaces), len(SIMILARITY_STATS))
    evidence: np.ndarray  # (n, k) the candidate's training pin most similar (-1: not asked)
    similarity: np.ndarray  # (n, k) its cosine similarity in the evidence space


class CandidateSearch:
    """Training pins of the word, image and (if given) character spaces, grouped by user.

    Parameters
    ----------
    words, chars : sparse matrix
        The training pins' tf-idf vectors (rows of zeros where a pin has no text); ``chars``
        None: no character space.
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
        self.spaces = SEARCH_SPACES if chars is not None else ("text", "image")
        texts = [make_space("text", b, None)[0][self.order]
                 for b in (words, chars) if b is not None]  # fmt: skip
        words = texts[0]
        self.images = unit_in_place(np.asarray(images, np.float32)[self.order])
        has_text, has_image = row_norms(words) > 0, row_norms(self.images) > 0
        self.joint_scale = 1.0 / np.sqrt(np.maximum(has_text + has_image.astype(int), 1))
        self.basis = principal_directions(self.images, PROJECTED_DIM)
        self.terms = [_Terms(b) for b in texts]
        self.counts = counts
        user_of = np.repeat(np.arange(n_classes), counts)  # of each training pin, in order
        spaces = self._split(texts, self.images)
        self.dense = [dense for dense, _ in spaces]  # rows grouped by user
        self.rare = [None if rare is None else _Postings(rare, user_of, self.bounds)
                     for _, rare in spaces]  # fmt: skip

    def _split(self, texts: list, images) -> list[tuple[np.ndarray, sp.csr_matrix | None]]:
        """Each space as the search compares it: the text spaces' common terms dense and the
        rest sparse (a sparse product over terms most pins share is nearly dense and many times
        slower than BLAS on the same numbers), the image space projected."""
        out = [terms.split(block) for terms, block in zip(self.terms, texts, strict=True)]
        out.append((images if self.basis is None else images @ self.basis, None))
        return out

    def search(
        self, words, chars, images: np.ndarray, candidates: np.ndarray, evidence: bool = False,
        chunk: int = PIN_CHUNK,
    ) -> Found:  # fmt: skip
        """Each pin's statistics per candidate (n, k) and space; with ``evidence``, also each
        candidate's training pin most similar to it. Queries are vectors as the training
        pins' (zero rows where a modality is not used; ``chars`` may be None where the search
        has no character space). At most ``chunk`` pins are compared at once."""
        n, k = candidates.shape
        found = self.search_pairs(words, chars, images, np.repeat(np.arange(n), k),
                                  candidates.ravel(), evidence, chunk)  # fmt: skip
        return Found(found.stats.reshape(n, k, *found.stats.shape[1:]),
                     found.evidence.reshape(n, k), found.similarity.reshape(n, k))  # fmt: skip

    def search_pairs(
        self, words, chars, images: np.ndarray, pins: np.ndarray, users: np.ndarray,
        evidence: bool = False, chunk: int = PIN_CHUNK,
    ) -> Found:  # fmt: skip
        """:meth:`search` of the pairs (``pins``, sorted, and ``users``): one statistic,
        evidence and similarity per pair."""
        m = len(pins)
        if m and (np.any(np.diff(pins) < 0) or pins[0] < 0 or pins[-1] >= words.shape[0]):
            raise ValueError("search_pairs needs the pairs' pins sorted and among the queries")
        found = Found(np.zeros((m, len(self.spaces), len(SIMILARITY_STATS)), np.float32),
                      np.full(m, -1), np.zeros(m))  # fmt: skip
        cuts = np.searchsorted(pins, np.arange(0, words.shape[0] + chunk, chunk))
        for begin, (lo, hi) in zip(range(0, words.shape[0], chunk), pairwise(cuts),
                                   strict=True):  # fmt: skip
            if lo == hi:
                continue
            rows = slice(begin, begin + chunk)
            texts = [make_space("text", block[rows], None)[0]
                     for block in (words, chars)[: len(self.terms)]]  # fmt: skip
            self._search_chunk(texts, make_space("image", None, images[rows])[0],
                               pins[lo:hi] - begin, users[lo:hi], evidence, found,
                               slice(lo, hi))  # fmt: skip
        return found

    def _search_chunk(self, texts: list, images: np.ndarray, pin, user, evidence: bool,
                      found: Found, at: slice):  # fmt: skip
        """The pairs (``pin``, a row of the queries ``texts`` and ``images``, ``user``) into
        ``found[at]``."""
        use_text, use_image = self._evidence_modalities(texts[0], images)
        by_user = np.argsort(user, kind="stable")  # the pairs grouped by user
        pairs = _Pairs(user[by_user], pin[by_user])
        m = len(pin)
        split = self._split(texts, images)
        items = pairs.items(self.counts)
        # one thread for a few pins: starting threads would cost more than it saves
        threads = blas_threads() if self.counts[pairs.user].sum() > ITEM_SIMILARITIES else 1
        # each space's rare-term hits, for consecutive parts of the pairs side by side
        spans = [slice(b, min(b + HITS_PAIRS, m)) for b in range(0, m, HITS_PAIRS)]
        hits = [None if rare is None else _Hits.joined(
                    side_by_side(lambda span, r=rare, q=query: r.hits(q, pairs, span), spans,
                                 threads))
                for (_, query), rare in zip(split, self.rare, strict=True)]  # fmt: skip
        stats = np.zeros((m, len(self.spaces), len(SIMILARITY_STATS)), np.float32)
        chosen = np.zeros(m, np.int64)  # per sorted pair: its evidence, in users' order
        parts = np.zeros((2, m))  # and the evidence's text and image similarities

        def compare(item: tuple[int, slice]) -> None:
            """Some of a user's pairs: their similarities to its pins in every space, then
            what is kept of them."""
            user, group = item
            mine, a, b = pairs.pin[group], self.bounds[user], self.bounds[user + 1]
            blocks = np.empty((len(split), len(mine), b - a), np.float32)
            for block, (query, _), dense, found_hits in zip(blocks, split, self.dense, hits,
                                                            strict=True):  # fmt: skip
                np.matmul(query[mine], dense[a:b].T, out=block)
                if found_hits is not None:
                    found_hits.add_to(block, group)
            stats[by_user[group]] = _statistics(blocks).transpose(1, 0, 2)
            if evidence:  # the pin most similar in the evidence space, the first of equals
                best = self._most_similar(blocks, use_text[mine], use_image[mine], a, b)
                chosen[group] = a + best
                parts[0, group] = blocks[0][np.arange(len(mine)), best]  # exact: unprojected
                parts[1, group] = np.einsum("ij,ij->i", images[mine], self.images[a + best])

        # the items side by side, as many as BLAS may use threads, each product on one
        # thread: many small products, which threads inside BLAS slow down
        with one_thread():  # (blas_threads read outside it: inside, it is 1)
            side_by_side(compare, items, threads)
        found.stats[at] = stats
        if evidence:
            self._evidence(pairs, chosen, parts, use_text, use_image, found, at, by_user)

    def _most_similar(self, blocks: np.ndarray, use_text: np.ndarray, use_image: np.ndarray,
                      a: int, b: int) -> np.ndarray:  # fmt: skip
        """Per pair (rows of ``blocks``, the user's pins ``a:b`` its columns), the place of
        the pin most similar in the evidence space: text (words) and image similarities summed
        and scaled by the training pins' joint norm where both are used, else the one used."""
        words, image = blocks[0], blocks[-1]
        score = np.add(words, image)
        score *= self.joint_scale[a:b]
        for rows, block in ((use_text & ~use_image, words), (use_image & ~use_text, image),
                            (~use_text & ~use_image, None)):  # fmt: skip
            if rows.any():
                score[rows] = 0 if block is None else block[rows]
        return score.argmax(axis=1)

    def _evidence(self, pairs, best, parts, use_text, use_image, found, at, by_user):
        """Each pair's evidence (``best``) and its similarity from its text and image parts
        (``parts``: the evidence space's, exact; the image part in full dimensions)."""
        mine = pairs.pin
        both = (use_text & use_image)[mine]
        scale = np.where(both, np.sqrt(0.5), 1.0) * np.where(both, self.joint_scale[best], 1.0)
        similarity = scale * (parts[0] * use_text[mine] + parts[1] * use_image[mine])
        given_order = np.argsort(by_user)  # the sorted pairs back in their order
        found.evidence[at] = self.order[best[given_order]]
        found.similarity[at] = similarity[given_order]

    def _evidence_modalities(self, words, images) -> tuple[np.ndarray, np.ndarray]:
        """Per pin: is its text, its image compared for the evidence?"""
        has_text, has_image = row_norms(words) > 0, row_norms(images) > 0
        if self.evidence_space == "text":
            return np.ones_like(has_text), np.zeros_like(has_image)
        if self.evidence_space == "image":
            return np.zeros_like(has_text), np.ones_like(has_image)
        return has_text, has_image


class _Pairs:
    """Pairs (pin, candidate user) sorted by user, then pin."""

    def __init__(self, user: np.ndarray, pin: np.ndarray) -> None:
        self.user, self.pin = user, pin

    def items(self, counts: np.ndarray) -> list[tuple[int, slice]]:
        """The pairs as ``(user, slice of pairs)``, a user's cut so that an item holds at most
        :data:`ITEM_SIMILARITIES` similarities a space: the fewer the items, the fewer
        products, each of which copies the user's pins (a product per user and chunk of a few
        hundred pins: about a quarter of the search's time went to their fixed costs)."""
        present, first = np.unique(self.user, return_index=True)
        ends = np.append(first[1:], len(self.user))
        items = []
        for user, begin, end in zip(present.tolist(), first.tolist(), ends.tolist(),
                                    strict=True):  # fmt: skip
            step = max(1, ITEM_SIMILARITIES // max(int(counts[user]), 1))
            items.extend((user, slice(b, min(b + step, end))) for b in range(begin, end, step))
        return items


class _Postings:
    """A split space's rare terms in the training pins, as postings grouped by user and term:
    a pair (pin, candidate) finds, by one binary search per term of the pin, the candidate's
    pins that use it. The product of the pins' rare terms with every training pin kept only
    its candidates' tenth of the non-zeros and was most of the search's time."""

    def __init__(self, rare: sp.csr_matrix, user_of: np.ndarray, bounds: np.ndarray) -> None:
        """``rare``: the training pins' rare terms, rows grouped by user (``user_of``)."""
        rare = sp.csr_matrix(rare)
        self.n_terms = rare.shape[1]
        pin = np.repeat(np.arange(rare.shape[0]), np.diff(rare.indptr))
        key = user_of[pin].astype(np.int64) * self.n_terms + rare.indices
        order = np.argsort(key, kind="stable")
        key = key[order]
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else key
        self.keys = key[first]  # (user, term) of each group, sorted
        self.starts = np.append(first, len(key))  # each group's postings
        self.position = (pin - bounds[user_of[pin]]).astype(np.int32)[order]  # among its user's
        self.weight = rare.data.astype(np.float32)[order]

    def hits(self, query: sp.csr_matrix, pairs: _Pairs, part: slice) -> _Hits:
        """The products, where not zero, of the pairs ``part`` on the rare terms."""
        pins = pairs.pin[part]
        counts = np.diff(query.indptr)[pins]
        entry = _ranges(query.indptr[pins], counts)  # each pair's pin's terms
        pair = np.repeat(np.arange(part.start, part.stop), counts)
        # the pairs are sorted by user: the keys sought are nearly in order
        key = pairs.user[pair].astype(np.int64) * self.n_terms + query.indices[entry]
        group = np.minimum(np.searchsorted(self.keys, key), max(len(self.keys) - 1, 0))
        shared = self.keys[group] == key if len(self.keys) else np.zeros(len(key), bool)
        pair, entry, group = pair[shared], entry[shared], group[shared]
        lengths = self.starts[group + 1] - self.starts[group]
        posting = _ranges(self.starts[group], lengths)
        weight = np.repeat(query.data[entry].astype(np.float32), lengths) * self.weight[posting]
        return _Hits(np.repeat(pair, lengths), self.position[posting], weight)


@dataclass
class _Hits:
    """Products of pairs with their users' pins on rare terms, sorted by pair: the pair, the
    pin's position among its user's, the product (a pin sharing several terms has several)."""

    pair: np.ndarray
    position: np.ndarray
    weight: np.ndarray

    @classmethod
    def joined(cls, parts: list[_Hits]) -> _Hits:
        """The hits of consecutive parts of the pairs, as one."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("pair", "position", "weight")))  # fmt: skip

    def add_to(self, block: np.ndarray, group: slice) -> None:
        """Add to ``block`` (the pairs ``group`` x their user's pins) their hits."""
        lo, hi = np.searchsorted(self.pair, [group.start, group.stop])
        at = (self.pair[lo:hi] - group.start) * block.shape[1] + self.position[lo:hi]
        np.add.at(block.reshape(-1), at, self.weight[lo:hi])  # a pin sharing several terms


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``starts[i], starts[i] + 1, ..., starts[i] + lengths[i] - 1`` for each i, concatenated."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if len(ends) else 0) + np.repeat(starts - ends + lengths, lengths)


class _Terms:
    """A text space's terms split in two: the common ones (a mask) become the columns of a
    dense array, the others those of a sparse matrix. Done on the stored values themselves: a
    product with column selectors cost a single pin more than its search."""

    def __init__(self, block: sp.csr_matrix) -> None:
        """The terms of the training pins ``block``: those more than COMMON_SHARE of them use,
        at most MAX_COMMON, are the common ones."""
        used_by = np.bincount(block.indices, minlength=block.shape[1])
        common = np.zeros(block.shape[1], bool)
        common[np.argsort(-used_by, kind="stable")[:MAX_COMMON]] = True
        self.common = common = common & (used_by > COMMON_SHARE * block.shape[0])
        self.column = np.where(common, np.cumsum(common), np.cumsum(~common)) - 1  # in its part
        self.n_common = int(common.sum())

    def split(self, block) -> tuple[np.ndarray, sp.csr_matrix]:
        block = sp.csr_matrix(block)
        if not block.has_canonical_format:  # a term twice in a row: summed first
            block = block.copy()
            block.sum_duplicates()
        n = block.shape[0]
        rows = np.repeat(np.arange(n), np.diff(block.indptr))
        common = self.common[block.indices]
        dense = np.zeros((n, self.n_common), np.float32)
        dense[rows[common], self.column[block.indices[common]]] = block.data[common]
        rare = ~common
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[rare], minlength=n))])
        shape = (n, len(self.common) - self.n_common)
        return dense, sp.csr_matrix((block.data[rare], self.column[block.indices[rare]], indptr),
                                    shape=shape)  # fmt: skip


def _statistics(similarity: np.ndarray) -> np.ndarray:
    """(..., 3): each row's best, mean of the best three (all when fewer) and mean. The best
    three are found by taking out each row's best twice (its place set to -inf, then put back,
    so ``similarity`` ends as it began): np.partition of the same rows took 13 times as long,
    longer than the products that made them."""
    m = similarity.shape[-1]
    if m <= 3:
        best, best3 = similarity.max(axis=-1), similarity.mean(axis=-1)
    else:
        rows = similarity.reshape(-1, m)
        at = np.arange(len(rows))
        taken = []
        for _ in range(2):
            place = rows.argmax(axis=1)
            taken.append((place, rows[at, place]))
            rows[at, place] = -np.inf
        shape = similarity.shape[:-1]
        best = taken[0][1].reshape(shape)
        best3 = (taken[0][1] + taken[1][1] + rows.max(axis=1)).reshape(shape) / 3
        for place, value in reversed(taken):
            rows[at, place] = value
    return np.stack([best, best3, similarity.mean(axis=-1)], -1)


def principal_directions(vectors: np.ndarray, dim: int) -> np.ndarray | None:
    """(features, ≤ ``dim``): the ``dim`` directions that keep most of the rows' dot products
    (top eigenvectors of their second moment, not centred: dot products include the mean);
    None when the vectors are no wider than ``dim``. From fewer rows than features they come
    from the rows' Gram matrix, and are fewer than ``dim`` where the rows span fewer."""
    if vectors.shape[1] <= dim:
        return None
    sample = vectors[:: max(1, len(vectors) // COVARIANCE_ROWS)]
    if len(sample) < vectors.shape[1]:
        return np.ascontiguousarray(principal_axes(sample)[1][:, :dim], dtype=np.float32)
    with one_thread():  # the same directions on any thread count (pinid.models.threads)
        _, directions = np.linalg.eigh(_second_moment(sample))
    return np.ascontiguousarray(directions[:, ::-1][:, :dim], dtype=np.float32)


def _second_moment(rows: np.ndarray, block: int = 4096) -> np.ndarray:
    """``rowsᵀ rows``, each block of rows multiplied in float32 and summed in float64 (1e-7
    relative per entry): a float64 copy of the sample would cost 200 MB at the paper's scale,
    at the default model's peak memory."""
    moment = np.zeros((rows.shape[1], rows.shape[1]))
    for start in range(0, len(rows), block):
        part = np.asarray(rows[start : start + block], np.float32)
        moment += part.T @ part
    return moment


def ranks_of(scores: np.ndarray, users: np.ndarray, block: int = 1 << 23) -> np.ndarray:
    """The rank of each of ``users`` (n, k) in its row of ``scores`` (0 = the highest; among
    equal scores, the first user ranks higher), from each row sorted once and searched, in
    blocks of rows holding at most ``block`` scores: comparing every user with each
    candidate cost 1.0 s of 10,000 pins' answers at 2,000 users, three times this."""
    n, k = users.shape
    m = scores.shape[1]
    out = np.empty((n, k), np.int64)
    step = max(1, block // max(m, 1))
    for begin in range(0, n, step):
        rows = slice(begin, begin + step)
        mine = np.take_along_axis(scores[rows], users[rows], axis=1)
        ordered = np.sort(scores[rows], axis=1)
        at_most = _count_at_most(ordered, mine)
        out[rows] = m - at_most  # the users scoring higher
        # another user with the same score sorts just below this one's: the rows where a
        # candidate ties are ranked again by a stable sort, which puts equal scores in the
        # users' order (a view a pin lacks, all ones, simply by index)
        below = np.take_along_axis(ordered, np.maximum(at_most - 2, 0), axis=1)
        flat = ordered[:, 0] == ordered[:, -1]  # every user tied: ranked by index
        out[begin + np.flatnonzero(flat)] = users[rows][flat]
        tied = ((at_most > 1) & (below == mine)).any(axis=1) & ~flat
        tied = begin + np.flatnonzero(tied)
        if len(tied):
            places = np.empty((len(tied), m), np.int64)
            order = np.argsort(-scores[tied], axis=1, kind="stable")
            np.put_along_axis(places, order, np.arange(m)[None, :], axis=1)
            out[tied] = np.take_along_axis(places, users[tied], axis=1)
    return out


def _count_at_most(ordered: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many entries of each row of ``ordered`` (sorted) are at most each of that row's
    ``values``: every row's binary searches at once, a power of two a step."""
    m = ordered.shape[1]
    count = np.zeros(values.shape, np.int64)
    step = 1 << (m.bit_length() - 1) if m else 0
    while step:
        further = count + step
        fits = further <= m
        at = np.take_along_axis(ordered, np.minimum(further, m) - 1, axis=1)
        count = np.where(fits & (at <= values), further, count)
        step //= 2
    return count


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
        columns.append(np.log1p(ranks_of(probabilities, candidates)))
    columns.extend(similarity[:, :, s, j] for s in range(similarity.shape[2])
                   for j in range(similarity.shape[3]))  # fmt: skip
    columns.append(log_counts[candidates])
    columns.append(np.broadcast_to(has_text[:, None], (n, k)))
    columns.append(np.broadcast_to(has_image[:, None], (n, k)))
    return np.stack([np.asarray(c, np.float64) for c in columns], axis=-1).reshape(n * k, -1)
