"""The paper's text cleaning, rule by rule, and the training-pin dictionary."""

from __future__ import annotations

from pinid.features.text import make_text_vectorizer, tokenize


def test_lower_cases():
    assert tokenize("Crochet PATTERN") == ["crochet", "pattern"]


def test_removes_urls():
    assert tokenize("cake http://x.com/a?b=1 www.site.org/page recipe") == ["cake", "recipe"]


def test_removes_hashtags_and_special_symbols():
    assert tokenize("*love* #diy knit!!! (wool), yarn; #") == ["love", "knit", "wool", "yarn"]


def test_removes_english_stop_words():
    assert tokenize("the ring of the gold and this") == ["ring", "gold"]


def test_removes_one_letter_words_and_long_words():
    long_word = "a" * 31
    assert tokenize(f"x y zz {long_word} {'b' * 30}") == ["zz", "b" * 30]


def test_keeps_accented_unicode_letters():
    assert tokenize("Direction à suivre: l'éléphant, niño, città") == [
        "direction",
        "suivre",
        "éléphant",
        "niño",
        "città",
    ]


def test_keeps_digits_inside_words():
    assert tokenize("uccello profilo 01 3d") == ["uccello", "profilo", "01", "3d"]


def test_dictionary_from_training_pins_drops_words_in_one_pin():
    train = ["red ring gold", "red necklace", "gold ring", "unique words here"]
    vectorizer = make_text_vectorizer().fit(train)
    assert sorted(vectorizer.vocabulary_) == ["gold", "red", "ring"]
    # a word seen in two pins but only in the test text is not in the dictionary
    assert vectorizer.transform(["necklace brand new"]).nnz == 0


def test_tfidf_rows_are_l2_normalised_and_weight_rare_words_more():
    vectorizer = make_text_vectorizer().fit(["a1 b1", "a1 b1", "a1 c1", "a1 c1", "a1"])
    row = vectorizer.transform(["a1 c1"]).toarray()[0]
    vocab = vectorizer.vocabulary_
    assert abs((row**2).sum() - 1) < 1e-9
    assert row[vocab["c1"]] > row[vocab["a1"]] > 0


def test_decomposed_accents_and_ligatures_are_normalised():
    decomposed = "citta\u0300 e\u0301le\u0301phant nin\u0303o"
    assert tokenize(decomposed) == ["città", "éléphant", "niño"]
    assert tokenize("\ufb01sh İstanbul") == ["fish", "i̇stanbul"]


def test_models_read_a_text_up_to_its_first_ten_thousand_characters():
    from pinid.features.text import MAX_TEXT_CHARS

    text = "apple " * (MAX_TEXT_CHARS // 6) + "zebra " * 1_000_000  # 6 MB on one line
    assert "zebra" not in tokenize(text) and "apple" in tokenize(text)
