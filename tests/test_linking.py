"""Account linking: the linker's pairs and evidence, the split-account protocols, their metrics,
and ``pinid link`` on a real model folder and dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pinid.cli import main
from pinid.errors import DataError
from pinid.evaluation.linking import (
    MIN_SIDE,
    SEPARATOR,
    linking_results,
    split_accounts,
    twin_metrics,
)
from pinid.models.linking import AccountLinker

TOPICS = ["flag country nation", "moon phase astronomy", "guitar music instrument",
          "flower garden plant", "car road vehicle", "cat dog animal"]  # fmt: skip


def _corpus(seed: int = 0, pins: int = 10):
    """Six users, each with a topic, a signature word of their own and an image cluster; the
    user "twin" writes and draws as "ann" does, under another name."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 32))
    texts, images, users, boards = [], [], [], []
    names = ["ann", "bob", "cem", "dia", "eve", "twin"]
    for u, name in enumerate(names):
        style = 0 if name == "twin" else u  # twin writes and draws like ann
        signature = f"sig{style}word"
        for i in range(pins):
            words = TOPICS[(style + i % 2) % len(TOPICS)].split()
            texts.append(" ".join([*rng.choice(words, 2), signature, f"x{i}"]))
            images.append(centres[style] + 0.3 * rng.normal(size=32))
            users.append(name)
            boards.append(f"board{i % 3}")
    return texts, np.array(images, np.float32), users, boards


def test_linker_finds_the_account_that_writes_and_draws_alike():
    texts, images, users, _ = _corpus()
    linker = AccountLinker().fit(texts, images, users)
    pairs = linker.pairs(top=5)
    assert [linker.accounts_[i] for i in pairs[0].accounts] == ["ann", "twin"]
    scores = [p.score for p in pairs]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert pairs[0].score > 0.5 > pairs[-1].score
    assert len({p.accounts for p in pairs}) == len(pairs)  # each pair once
    owner = np.asarray(users)
    for pair in pairs:
        accounts = [linker.accounts_[i] for i in pair.accounts]
        assert 1 <= len(pair.evidence) <= linker.evidence
        for e in pair.evidence:
            assert [owner[p] for p in e.pins] == accounts
            assert e.view in ("words", "chars", "image") and 0 < e.similarity <= 1


def test_linker_evidence_is_the_most_alike_pin_pair():
    texts, images, users, _ = _corpus()
    linker = AccountLinker().fit(texts, images, users)
    best = linker.pairs(top=1)[0].evidence[0]
    # ann and twin each have pins of the same words: the evidence is such a pair
    assert best.similarity == pytest.approx(1.0) and best.view in ("words", "chars")
    assert texts[best.pins[0]] == texts[best.pins[1]]


def test_linker_needs_two_accounts():
    texts, images, _, _ = _corpus()
    with pytest.raises(DataError, match="two accounts"):
        AccountLinker().fit(texts, images, ["solo"] * len(texts))


@pytest.mark.parametrize(
    "texts",
    [["", "", "", ""], ["ab", "cd", "ef", "gh"], ["a b", "c d", "e f", "g h"]],
    ids=["no-text", "no-shared-word", "only-stop-words"],
)
def test_linker_works_from_images_when_texts_share_nothing(texts):
    images = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    linker = AccountLinker().fit(texts, images, ["ann", "twin", "bob", "cem"])
    best = linker.pairs(top=1)[0]
    assert [linker.accounts_[i] for i in best.accounts] == ["ann", "twin"]
    assert best.evidence and best.evidence[0].similarity > 0.9


def test_random_split_halves_users_with_enough_pins_and_keeps_the_others_whole():
    users = ["a"] * 9 + ["b"] * 8 + ["c"] * 7
    accounts, twins = split_accounts(users, [None] * len(users), "random", seed=1)
    assert twins == [(f"a{SEPARATOR}0", f"a{SEPARATOR}1"), (f"b{SEPARATOR}0", f"b{SEPARATOR}1")]
    sizes = {name: int((accounts == name).sum()) for name in np.unique(accounts)}
    assert sizes == {f"a{SEPARATOR}0": 4, f"a{SEPARATOR}1": 5, f"b{SEPARATOR}0": 4,
                     f"b{SEPARATOR}1": 4, "c": 7}  # fmt: skip
    again, _ = split_accounts(users, [None] * len(users), "random", seed=1)
    other, _ = split_accounts(users, [None] * len(users), "random", seed=2)
    assert (again == accounts).all() and not (other == accounts).all()


def test_board_split_keeps_each_board_whole_on_one_side():
    boards = ["x"] * 5 + ["y"] * 3 + ["z"] * 2  # a: 10 pins on 3 boards
    boards += ["only"] * 9  # b: one board, left whole
    boards += ["big"] * 7 + ["small"] * 2  # c: a side would have 2 pins, left whole
    users = ["a"] * 10 + ["b"] * 9 + ["c"] * 9
    accounts, twins = split_accounts(users, boards, "board", seed=0)
    assert twins == [(f"a{SEPARATOR}0", f"a{SEPARATOR}1")]
    side = {b: set(accounts[[i for i, x in enumerate(boards) if x == b]]) for b in "xyz"}
    assert all(len(s) == 1 for s in side.values())  # no board on both sides
    assert side["x"] != side["y"] and side["y"] == side["z"]  # largest first, to the smaller
    assert min((accounts == t).sum() for t in twins[0]) >= MIN_SIDE
    assert set(accounts[10:19]) == {"b"} and set(accounts[19:]) == {"c"}


def test_twin_metrics_on_known_scores():
    names = np.array([f"a{SEPARATOR}0", f"a{SEPARATOR}1", "b", "c"])
    scores = np.array([[0, 0.9, 0.1, 0.2],  # a0: its twin first
                       [0.9, 0, 0.95, 0.0],  # a1: b beats its twin: rank 2
                       [0.1, 0.95, 0, 0.3],
                       [0.2, 0.0, 0.3, 0]])  # fmt: skip
    m = twin_metrics(scores, names, [(names[0], names[1])])
    assert m["recall_at_1"] == 0.5 and m["mrr"] == 0.75
    assert m["auc"] == pytest.approx(4 / 5)  # the twin pair (0.9) beats 4 of 5 other pairs
    assert (m["accounts"], m["twin_pairs"]) == (4, 1)
    level = twin_metrics(np.ones((4, 4)), names, [(names[0], names[1])])  # all scores tied
    assert level["recall_at_1"] == 0 and level["mrr"] == 0.5 and level["auc"] == 0.5


def test_linking_results_say_why_a_protocol_is_left_out():
    texts, images, users, _ = _corpus()
    results = linking_results(texts, images, users, [None] * len(users), seed=0)
    assert results["board_skipped"] == "the data has no boards" and "board" not in results
    random = results["random"]
    assert (random["accounts"], random["twin_pairs"]) == (12, 6)
    # the halves of bob, cem, dia and eve find each other; ann's and twin's four look alike
    assert random["recall_at_1"] >= 8 / 12 and random["auc"] > 0.9
    assert set(random["floor_mean_words"]) == {"recall_at_1", "mrr", "auc"}
    few = linking_results(texts[:30], images[:30], users[:30], [None] * 30, seed=0)
    assert "random" in few  # 10 pins each: split
    results = linking_results(texts[::2], images[::2], users[::2], [None] * 30, seed=0)
    assert results["random_skipped"] == "no user with 8+ training pins to split"


@pytest.mark.slow
def test_link_command_lists_pairs_with_evidence(sample_model, capsys):
    assert main(["link", "--model", str(sample_model), "--json", "--top", "3"]) == 0
    pairs = json.loads(capsys.readouterr().out)["pairs"]
    assert 1 <= len(pairs) <= 3
    assert [p["score"] for p in pairs] == sorted((p["score"] for p in pairs), reverse=True)
    model = json.loads((sample_model / "model.json").read_text())
    pins = model["training_pins"]
    users = dict(zip(pins["pin_id"], pins["user"], strict=True))
    for pair in pairs:
        assert len(pair["accounts"]) == 2 and pair["evidence"]
        for e in pair["evidence"]:
            assert set(e) == {"pins", "texts", "images", "image_urls", "view", "similarity"}
            assert [users[p] for p in e["pins"]] == pair["accounts"]
    assert main(["link", "--model", str(sample_model)]) == 0
    assert " ~ " in capsys.readouterr().out


@pytest.mark.slow
def test_link_command_on_a_dataset_writes_json_lines(sample_corpus, tmp_path, capsys):
    out = tmp_path / "links.jsonl"
    assert main(["link", "--data", str(sample_corpus), "--out", str(out), "--top", "2"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2 and all(len(p["accounts"]) == 2 for p in lines)
    with pytest.raises(SystemExit):
        main(["link", "--data", str(sample_corpus), "--top", "0"])
    capsys.readouterr()
    for bad in (["--model", str(tmp_path / "absent")], ["--data", str(tmp_path / "absent.jsonl")],
                ["--data", str(sample_corpus), "--out", str(tmp_path)]):  # fmt: skip
        assert main(["link", *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pinid: error: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["links.jsonl"]  # nothing partial


@pytest.mark.slow
def test_model_links_are_the_command_s_pairs_and_check_top(sample_model, capsys):
    import pinid

    model = pinid.load(sample_model)
    pairs = model.links(top=2)
    assert main(["link", "--model", str(sample_model), "--json", "--top", "2"]) == 0
    assert [p.model_dump() for p in pairs] == json.loads(capsys.readouterr().out)["pairs"]
    assert all(isinstance(p, pinid.AccountPair) for p in pairs)
    for bad in (0, 1001, 2.5, True):
        with pytest.raises(ValueError, match="top must be"):
            model.links(top=bad)
