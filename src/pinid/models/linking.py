"""Which accounts does one person run? Accounts compared with accounts, with evidence.

Each account gets a profile per view. Words, character n-grams and the shape of its texts
(:func:`text_shape`: capitals, punctuation, digits, how titles are written -- habits that stay
when the subject changes): account-level tf-idf, a term weighted by the share of the account's
pins that use it times its rarity among accounts, so that a term many accounts use counts little
and an account's own habits count much. Image: the mean of its pins' image-view vectors. Per
view, two accounts' similarity is the cosine of their profiles less the mean of each one's
similarity to its nearest accounts (CSLS), so that an account close to everyone (a hub) does
not link with everyone; the score averages the views.

The score is mapped to [0, 1] by a logistic fitted on self-splits: each account with enough pins
is cut in two at random; among each half's nearest accounts, its other half is a positive pair
and the rest negative: how likely a pair of nearby accounts is one account seen twice, as far
as halves tell (whole accounts look alike more readily, so it ranks with a scale rather than
being a calibrated probability). The search is exact and blockwise: no (accounts x accounts)
matrix is ever held whole, and only each account's nearest ``neighbours`` become candidate
pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from pinid.errors import DataError
from pinid.features.text import MAX_TEXT_CHARS, clean, tokenize
from pinid.models.answer import AccountPair, PinPair

if TYPE_CHECKING:
    from pinid.models.final_model import FinalModel
    from pinid.models.io import TrainingPins

EVIDENCE_VIEWS = ("words", "chars", "image")
"""Two texts of the same shape are no evidence a person can weigh: shape only scores."""
MIN_PINS_TO_HALVE = 4
_SMALL, _CAPITAL, _DIGIT = re.compile("[a-z]"), re.compile("[A-Z]"), re.compile("[0-9]")
_SMALL_RUN, _DIGITS = re.compile("x{3,}"), re.compile("0{2,}")
BLOCK = 2**23
"""Scores held at a time: accounts are scored in blocks of BLOCK / accounts rows against all
(32 MB of float32 a temporary, however many accounts)."""
COMMON = 0.05
"""A term used by more than this share of accounts is held dense in the profiles (_Split)."""


@dataclass
class PinMatch:
    """Two pins, one of each account, and how alike they are in one view (pin indices)."""

    pins: tuple[int, int]
    view: str
    similarity: float


@dataclass
class LinkedPair:
    """Two accounts (indices into ``accounts_``), their score and the evidence."""

    accounts: tuple[int, int]
    score: float
    evidence: list[PinMatch]


def text_shape(text: str) -> str:
    """How a text is written, whatever it is about: ASCII capitals, small letters and digits as
    X, x and 0, runs of three or more small letters as xxx and of digits as 00; punctuation,
    spacing and other letters kept as they are (accents hint at a language)."""
    text = _DIGIT.sub("0", _CAPITAL.sub("X", _SMALL.sub("x", text[:MAX_TEXT_CHARS])))
    return _DIGITS.sub("00", _SMALL_RUN.sub("xxx", text))


def _term_counts(texts: Sequence[str]) -> dict[str, sp.csr_matrix]:
    """Which words, character 2-5-grams (within words) and 2-4-grams of the text's shape each
    pin uses (terms of 2+ pins)."""
    words = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None,
                            min_df=2, binary=True, dtype=np.float32)  # fmt: skip
    chars = CountVectorizer(analyzer="char_wb", ngram_range=(2, 5), lowercase=False,
                            binary=True, dtype=np.float32)  # fmt: skip
    shape = CountVectorizer(analyzer="char", ngram_range=(2, 4), lowercase=False,
                            binary=True, dtype=np.float32)  # fmt: skip
    views = {  # n-grams, the costly terms, are found per part (its words, its shape)
        "words": lambda: words.fit_transform(texts),
        "chars": lambda: _pin_terms((clean(t).split() for t in texts), chars),
        "shape": lambda: _pin_terms(([text_shape(t)] for t in texts), shape),
    }
    out = {}
    for view, count in views.items():
        try:
            counts = sp.csr_matrix(count())
        except ValueError:  # no term at all
            continue
        if counts.shape[1]:  # a view with no term in two pins says nothing: left out
            out[view] = counts
    return out


def _pin_terms(parts: Iterable[list[str]], terms: CountVectorizer) -> sp.csr_matrix:
    """(pins, terms of 2+ pins), binary, sorted by term: what ``terms`` with min_df=2 finds in
    the pins' texts when a text's terms are the union of its parts' (char_wb n-grams never
    cross words). Each distinct part is analysed once, not at every use: at 300,000 pins 3
    times faster, and no list of every n-gram occurrence held."""
    pin_parts = CountVectorizer(analyzer=list, binary=True, dtype=np.float32)
    has_part = pin_parts.fit_transform(parts)
    has_term = has_part @ terms.fit_transform(pin_parts.get_feature_names_out())
    has_term.data[:] = 1
    used_by = np.bincount(has_term.indices, minlength=has_term.shape[1])
    return has_term[:, used_by >= 2]


def membership(account_of_pin: np.ndarray, n_accounts: int) -> sp.csr_matrix:
    """(accounts, pins): each account's row averages its pins."""
    counts = np.bincount(account_of_pin, minlength=n_accounts).astype(np.float32)
    n = len(account_of_pin)
    return sp.csr_matrix((1.0 / counts[account_of_pin], (account_of_pin, np.arange(n))),
                         shape=(n_accounts, n))  # fmt: skip


def _inverse_norms(X: np.ndarray) -> np.ndarray:
    """1 / each row's length (1 for a zero row), as ``normalize`` divides; no copy of X."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    return 1.0 / np.where(norms > 0, norms, 1.0)


@dataclass
class _Split:
    """Unit account profiles of a text view, cut by columns: the terms more than COMMON of the
    accounts use as a dense array, the rest sparse. A sparse product over terms most accounts
    share is nearly dense and many times slower than BLAS on the same numbers (10,000 synthetic
    accounts' character n-grams: 7 s a block of 1,024 accounts, against 1 s so cut); for rare
    terms a sparse product is the fast one."""

    common: np.ndarray
    rare: sp.csr_matrix

    @classmethod
    def of(cls, profile: sp.csr_matrix) -> _Split:
        used_by = np.bincount(profile.indices, minlength=profile.shape[1])
        common = used_by > COMMON * profile.shape[0]
        return cls(profile[:, common].toarray(), sp.csr_matrix(profile[:, ~common]))

    @property
    def shape(self) -> tuple[int, int]:
        return self.common.shape[0], self.common.shape[1] + self.rare.shape[1]


def _profiles(
    terms: dict[str, sp.csr_matrix],
    images: np.ndarray,
    image_scale: np.ndarray,
    account_of_pin: np.ndarray,
    m: int,
) -> tuple[dict, dict]:
    """Account profiles per view (unit rows) and the term weights (rarity among accounts).
    ``image_scale``: each image vector's inverse length, so the image profile averages unit
    vectors without a normalised copy of them all."""
    average = membership(account_of_pin, m)
    profiles, weights = {}, {}
    for view, counts in terms.items():
        share = average @ counts  # the share of the account's pins using each term
        used_by = np.bincount(share.indices, minlength=counts.shape[1])
        weights[view] = (np.log((1 + m) / (1 + used_by)) + 1).astype(np.float32)
        profiles[view] = _Split.of(sp.csr_matrix(normalize(share @ sp.diags(weights[view]))))
    mean = (average @ sp.diags(image_scale)) @ images
    profiles["image"] = normalize(np.asarray(mean, np.float32))
    return profiles, weights


def _blocks(m: int) -> Iterator[np.ndarray]:
    size = max(1, BLOCK // m)
    for start in range(0, m, size):
        yield np.arange(start, min(start + size, m))


def _cosines(profile, rows: np.ndarray) -> np.ndarray:
    if isinstance(profile, _Split):
        part = profile.common[rows] @ profile.common.T
        part += (profile.rare[rows] @ profile.rare.T).toarray()
    else:
        part = np.asarray(profile[rows] @ profile.T)
    part = part.astype(np.float32, copy=False)
    part[np.arange(len(rows)), rows] = -np.inf  # an account is not its own candidate
    return part


def _hubness(profile, neighbours: int) -> np.ndarray:
    """Each account's mean cosine to its ``neighbours`` nearest accounts."""
    m = profile.shape[0]
    k = min(neighbours, m - 1)
    out = np.zeros(m, np.float32)
    for rows in _blocks(m):
        S = _cosines(profile, rows)
        out[rows] = np.partition(S, m - k, axis=1)[:, m - k :].mean(axis=1)
    return out


class _Space:
    """Profiles of some accounts and the corrected similarity between them."""

    def __init__(self, profiles: dict, neighbours: int) -> None:
        self.profiles = profiles
        self.hubness = {v: _hubness(p, neighbours) for v, p in profiles.items()}
        self.m = profiles["image"].shape[0]

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """(rows, accounts) mean CSLS over the views; -inf on an account itself."""
        total = np.zeros((len(rows), self.m), np.float32)
        for view, profile in self.profiles.items():
            h = self.hubness[view]
            total += _cosines(profile, rows) - (h[rows, None] + h[None, :]) / 2
        return total / len(self.profiles)

    def nearest(self, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
        """Each account's ``neighbours`` best accounts (m, k) and their scores, best first."""
        k = min(neighbours, self.m - 1)
        best = np.zeros((self.m, k), np.int64)
        values = np.zeros((self.m, k), np.float32)
        for rows in _blocks(self.m):
            S = self.scores(rows)
            top = np.argpartition(-S, k - 1, axis=1)[:, :k]
            top_s = np.take_along_axis(S, top, axis=1)
            order = np.argsort(-top_s, axis=1, kind="stable")
            best[rows] = np.take_along_axis(top, order, axis=1)
            values[rows] = np.take_along_axis(top_s, order, axis=1)
        return best, values


class AccountLinker(BaseEstimator):
    """Scores pairs of accounts by how likely one person runs both.

    Parameters
    ----------
    neighbours : int
        Accounts each account is compared with closely: the hubness correction's neighbourhood
        and the candidate pairs of :meth:`pairs`.
    evidence : int
        Pin pairs shown per account pair.
    random_state : int
        Seed of the self-splits that fit the score's logistic.

    Attributes
    ----------
    accounts_ : ndarray of str
        The accounts, as sorted; pairs name them by index.
    calibration_ : tuple of float
        Slope and intercept of the score's logistic.
    """

    def __init__(self, neighbours: int = 10, evidence: int = 3, random_state: int = 0) -> None:
        self.neighbours = neighbours
        self.evidence = evidence
        self.random_state = random_state

    def fit(
        self, texts: Sequence[str], image_vectors: np.ndarray, accounts: Sequence[str]
    ) -> AccountLinker:
        """``image_vectors``: the pins' image-view vectors (one row per pin, any width); kept,
        not copied, when they are float32 (at 300,000 pins a copy would be 1.5 GB)."""
        accounts = np.asarray(accounts).astype(str)
        if not len(texts) == len(image_vectors) == len(accounts):
            raise ValueError("texts, image vectors and accounts must be row-aligned")
        self.accounts_, self.account_of_pin_ = np.unique(accounts, return_inverse=True)
        if len(self.accounts_) < 2:
            raise DataError("linking accounts needs at least two accounts")
        self.pin_order_ = np.argsort(self.account_of_pin_, kind="stable")
        self.pin_starts_ = np.concatenate([[0], np.cumsum(np.bincount(self.account_of_pin_))])
        self.images_ = np.asarray(image_vectors, np.float32)
        self.image_scale_ = _inverse_norms(self.images_)
        self.terms_ = _term_counts(texts)
        profiles, self.weights_ = _profiles(self.terms_, self.images_, self.image_scale_,
                                            self.account_of_pin_, len(self.accounts_))  # fmt: skip
        self.space_ = _Space(profiles, self.neighbours)
        self.calibration_ = self._calibrate()
        self._nearest = None  # each account's nearest, found on the first call of pairs
        return self

    def _pins(self, account: int) -> np.ndarray:
        """An account's pins, ascending: a slice of one sort, not a scan of every pin (which,
        once per account, grows as accounts x pins)."""
        return self.pin_order_[self.pin_starts_[account] : self.pin_starts_[account + 1]]

    def _pin_vectors(self, view: str, pins: np.ndarray):
        """The pins' unit vectors in one view, made when evidence asks for them."""
        if view == "image":
            return normalize(self.images_[pins])
        return normalize(self.terms_[view][pins] @ sp.diags(self.weights_[view]))

    def _calibrate(self) -> tuple[float, float]:
        halves, twin = self._halves()
        if twin is None:  # no account has enough pins to halve: the score is the plain logistic
            return 1.0, 0.0
        profiles = _profiles(self.terms_, self.images_, self.image_scale_, halves, len(twin))[0]
        space = _Space(profiles, self.neighbours)
        best, values = space.nearest(self.neighbours)
        halved = twin >= 0
        hit = best[halved] == twin[halved, None]
        x, y = values[halved].ravel(), hit.ravel()
        if y.all() or not y.any():
            return 1.0, 0.0
        fit = LogisticRegression(C=100.0).fit(x[:, None], y)
        slope = float(fit.coef_[0, 0])
        if slope <= 0:  # a higher score must never mean a lower probability (pairs' order)
            return 1.0, 0.0
        return slope, float(fit.intercept_[0])

    def _halves(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Each account with enough pins cut in two at random: every pin's half-account and
        each half's twin (-1 for an account left whole)."""
        rng = np.random.default_rng(self.random_state)
        halves = np.empty_like(self.account_of_pin_)
        twin: list[int] = []
        for account in range(len(self.accounts_)):
            pins = self._pins(account)
            first = len(twin)
            if len(pins) < MIN_PINS_TO_HALVE:
                halves[pins] = first
                twin.append(-1)
                continue
            pins = rng.permutation(pins)
            halves[pins[: len(pins) // 2]], halves[pins[len(pins) // 2 :]] = first, first + 1
            twin += [first + 1, first]
        twins = np.array(twin)
        return halves, (twins if (twins >= 0).any() else None)

    # --- scores ---------------------------------------------------------------------------
    def probability(self, values: np.ndarray) -> np.ndarray:
        """Scores (mean CSLS) mapped to [0, 1] by the self-split logistic: how likely a pair of
        nearby accounts is one account, as learnt from halves of accounts. Whole accounts have
        more pins than halves and look alike more readily, so read it as a ranking with a
        scale, not as a calibrated probability."""
        slope, intercept = self.calibration_
        return 1.0 / (1.0 + np.exp(-(slope * np.asarray(values, np.float64) + intercept)))

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """(rows, accounts) uncalibrated scores of the accounts ``rows`` against all."""
        return self.space_.scores(np.asarray(rows))

    def pairs(self, top: int = 20) -> list[LinkedPair]:
        """The ``top`` best pairs among each account's nearest accounts, best first (the
        search runs once; later calls only gather evidence)."""
        if self._nearest is None:
            self._nearest = self.space_.nearest(self.neighbours)
        best, values = self._nearest
        a = np.repeat(np.arange(len(best)), best.shape[1])
        b, v = best.ravel(), values.ravel()
        low, high = np.minimum(a, b), np.maximum(a, b)
        _, first = np.unique(low * len(best) + high, return_index=True)  # each pair once
        order = first[np.lexsort((high[first], low[first], -v[first]))][:top]
        probabilities = self.probability(v[order])
        return [
            LinkedPair((int(low[i]), int(high[i])), float(p), self._evidence(low[i], high[i]))
            for i, p in zip(order, probabilities, strict=True)
        ]

    def _evidence(self, a: int, b: int) -> list[PinMatch]:
        """The most alike pin pairs across two accounts, over the views, best first."""
        pins_a, pins_b = self._pins(a), self._pins(b)
        found: dict[tuple[int, int], PinMatch] = {}
        for view in EVIDENCE_VIEWS:
            if view != "image" and view not in self.terms_:
                continue
            S = self._pin_vectors(view, pins_a) @ self._pin_vectors(view, pins_b).T
            S = S.toarray() if sp.issparse(S) else S
            k = min(self.evidence, S.size)
            for flat in np.argsort(-S, axis=None, kind="stable")[:k]:
                i, j = np.unravel_index(flat, S.shape)
                pair, similarity = (int(pins_a[i]), int(pins_b[j])), min(float(S[i, j]), 1.0)
                if similarity > 0 and (pair not in found or found[pair].similarity < similarity):
                    found[pair] = PinMatch(pair, view, similarity)
        return sorted(found.values(), key=lambda p: -p.similarity)[: self.evidence]


def model_linker(model: FinalModel, pins: TrainingPins) -> AccountLinker:
    """The linker of a trained model's users: its training pins' texts and image-view vectors
    (``pins`` row-aligned with the model's arrays)."""
    return AccountLinker().fit(pins.texts, model.views_.base.train_image_, pins.users)


def account_pairs(linker: AccountLinker, pins: TrainingPins, top: int) -> list[AccountPair]:
    """A fitted linker's ``top`` pairs, their pins named as ``pins`` (row-aligned) names them."""
    return [
        AccountPair.model_construct(
            accounts=[str(linker.accounts_[i]) for i in pair.accounts],
            score=pair.score,
            evidence=[
                PinPair.model_construct(
                    pins=[pins.pin_ids[i] for i in e.pins],
                    texts=[pins.texts[i] for i in e.pins],
                    images=[pins.images[i] for i in e.pins],
                    image_urls=[None, None],
                    view=e.view,
                    similarity=e.similarity,
                )
                for e in pair.evidence
            ],
        )
        for pair in linker.pairs(top)
    ]
