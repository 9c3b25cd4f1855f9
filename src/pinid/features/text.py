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

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

MAX_WORD_LENGTH = 30
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_HASHTAG = re.compile(r"#[^\W_][\w-]*")
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# Runs of Unicode letters and digits, with any combining marks that NFKC could not fold into
# them (casefolded "İ" is "i" + a combining dot); symbols split words.
_WORD = re.compile(rf"[^\W_](?:[^\W_]|[{_MARKS}])*")


def tokenize(text: str) -> list[str]:
    """The words of a pin's text after the paper's cleaning rules, in order.

    NFKC first, so a decomposed "città" (c-i-t-t-a + combining accent) is one word, not two,
    and ligatures become letters; ``casefold`` is lower-casing that also handles "İ" and "ß".
    """
    text = _HASHTAG.sub(" ", _URL.sub(" ", unicodedata.normalize("NFKC", text).casefold()))
    return [
        word
        for word in _WORD.findall(text)
        if 1 < len(word) <= MAX_WORD_LENGTH and word not in ENGLISH_STOP_WORDS
    ]


def make_text_vectorizer(min_pins: int = 2) -> TfidfVectorizer:
    """tf-idf over :func:`tokenize`; words in fewer than ``min_pins`` training pins are dropped."""
    return TfidfVectorizer(
        tokenizer=tokenize,
        preprocessor=None,
        lowercase=False,
        token_pattern=None,
        min_df=min_pins,
    )
