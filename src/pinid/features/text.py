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

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

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


def make_char_vectorizer(min_pins: int = 2) -> TfidfVectorizer:
    """tf-idf over character 2- to 5-grams within words of the cleaned text (sublinear counts).

    Beyond the paper: short, misspelt, inflected and multilingual pins share n-grams where
    they share no whole word ("tulipano"/"tulip", "cats"/"cat").
    """
    return TfidfVectorizer(
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
