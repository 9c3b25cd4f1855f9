"""The paper's text representation: cleaned bag of words, training-pin dictionary, tf-idf.

Cleaning follows section 3 of the paper: lower-case (after Unicode NFKC normalisation); URLs,
hashtags and special symbols removed; English stop words, one-letter words and words longer
than 30 characters dropped.
Unicode letters are kept (accented Italian, French, Spanish words survive). tf-idf itself is
scikit-learn's; only the tokenizer is ours.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_is_fitted

MAX_WORD_LENGTH = 30
MAX_TEXT_CHARS = 10_000
"""Models read a pin's text up to here: pins are short, and a hostile 5 MB text would
otherwise cost the character view seconds and gigabytes per pass."""
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_HASHTAG = re.compile(r"#[^\W_][\w-]*")
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# Runs of Unicode letters and digits, with any combining marks that NFKC could not fold into
# them (casefolded "İ" is "i" + a combining dot); symbols split words.
_WORD = re.compile(rf"[^\W_](?:[^\W_]|[{_MARKS}])*")


def clean(text: str) -> str:
    """The first ``MAX_TEXT_CHARS`` characters, NFKC, casefolded, URLs and hashtags removed:
    the text both text views start from.

    NFKC first, so a decomposed "città" (c-i-t-t-a + combining accent) is one word, not two,
    and ligatures become letters; ``casefold`` is lower-casing that also handles "İ" and "ß".
    """
    text = unicodedata.normalize("NFKC", text[:MAX_TEXT_CHARS]).casefold()
    return _HASHTAG.sub(" ", _URL.sub(" ", text))


def tokenize(text: str) -> list[str]:
    """The words of a pin's text after the paper's cleaning rules, in order."""
    text = clean(text)
    return [
        word
        for word in _WORD.findall(text)
        if 1 < len(word) <= MAX_WORD_LENGTH and word not in ENGLISH_STOP_WORDS
    ]


WORD_NGRAM_CACHE = 1 << 16
"""Distinct words whose n-grams one pass keeps: a corpus repeats its words, so most of a
pass's n-grams come from the cache."""


def word_ngrams(word: str, low: int, high: int) -> list[str]:
    """scikit-learn's ``char_wb`` n-grams of one word: padded with a space each side, every
    n-gram of each length from ``low`` to ``high``; a padded word no longer than ``n`` is one
    n-gram, counted once."""
    padded = f" {word} "
    grams = []
    for n in range(low, high + 1):
        if len(padded) <= n:
            grams.append(padded)
            break
        grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


class CharNgramVectorizer(TfidfVectorizer):
    """``TfidfVectorizer(analyzer="char_wb")``'s model, with each distinct word of a pass
    analysed once instead of at every occurrence: the n-grams were most of the character
    view's cost in training and in answers (``benchmarks/paper_scale.py``).

    ``char_wb`` n-grams never cross words, so a pin's counts are the sum of its words':
    ``transform`` multiplies (pins x words) by (words x n-grams) counts.
    """

    def build_analyzer(self) -> Callable[[str], list[str]]:
        low, high = self.ngram_range
        grams = lru_cache(maxsize=WORD_NGRAM_CACHE)(lambda word: word_ngrams(word, low, high))
        preprocess = self.build_preprocessor()

        def analyze(doc: str) -> list[str]:
            out: list[str] = []
            for word in preprocess(self.decode(doc)).split():
                out.extend(grams(word))
            return out

        return analyze

    def transform(self, raw_documents: Iterable[str]) -> sp.csr_matrix:
        check_is_fitted(self, "vocabulary_")
        if isinstance(raw_documents, str):
            raise ValueError("Iterable over raw text documents expected, string object received.")
        preprocess = self.build_preprocessor()
        word_ids: dict[str, int] = {}
        occurrences, indptr = [], [0]
        for doc in raw_documents:
            occurrences.extend(word_ids.setdefault(word, len(word_ids))
                               for word in preprocess(self.decode(doc)).split())  # fmt: skip
            indptr.append(len(occurrences))
        pin_words = sp.csr_matrix(
            (np.ones(len(occurrences), np.float32), occurrences, indptr),
            shape=(len(indptr) - 1, len(word_ids)),
        )
        counts = sp.csr_matrix(pin_words @ self._word_counts(list(word_ids)))
        if self.sublinear_tf:
            np.log(counts.data, out=counts.data)
            counts.data += 1.0
        if self.use_idf:
            counts.data *= self.idf_[counts.indices]
        return normalize(counts, norm=self.norm, copy=False) if self.norm else counts

    def _word_counts(self, words: list[str]) -> sp.csr_matrix:
        """(words, vocabulary): how often each known n-gram occurs in each word."""
        low, high = self.ngram_range
        rows, columns = [], []
        for row, word in enumerate(words):
            for gram in word_ngrams(word, low, high):
                column = self.vocabulary_.get(gram)
                if column is not None:
                    rows.append(row)
                    columns.append(column)
        ones = np.ones(len(rows), np.float32)
        shape = (len(words), len(self.vocabulary_))
        return sp.csr_matrix((ones, (rows, columns)), shape=shape)  # repeats summed


def make_char_vectorizer(min_pins: int = 2) -> CharNgramVectorizer:
    """tf-idf over character 2- to 5-grams within words of the cleaned text (sublinear counts).

    Beyond the paper: short, misspelt, inflected and multilingual pins share n-grams where
    they share no whole word ("tulipano"/"tulip", "cats"/"cat").
    """
    return CharNgramVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        preprocessor=clean,
        lowercase=False,
        min_df=min_pins,
        sublinear_tf=True,
        dtype=np.float32,
    )


def make_text_vectorizer(min_pins: int = 2) -> TfidfVectorizer:
    """tf-idf over :func:`tokenize`; words in fewer than ``min_pins`` training pins are dropped."""
    return TfidfVectorizer(
        tokenizer=tokenize,
        preprocessor=None,
        lowercase=False,
        token_pattern=None,
        min_df=min_pins,
    )
