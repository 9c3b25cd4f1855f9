"""The Python API as README shows it: train, save, load, identify; PinClassifier in
scikit-learn's model selection."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pinid
from pinid.errors import DataError
from tests.conftest import write_image

README = Path(__file__).parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.fixture
def in_corpus(sample_corpus, tmp_path, monkeypatch) -> Path:
    """A copy of the sample corpus as README's ``pins.jsonl`` and ``apple.png``, as cwd."""
    folder = tmp_path / "work"
    shutil.copytree(sample_corpus.parent, folder)
    (folder / "manifest.jsonl").rename(folder / "pins.jsonl")
    first = json.loads((folder / "pins.jsonl").read_text().splitlines()[0])
    shutil.copy(folder / first["image"], folder / "apple.png")
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.slow
def test_readmes_python_block_runs_as_written(in_corpus, capsys):
    namespace: dict = {}
    exec(compile(_python_blocks()[0], "README.md", "exec"), namespace)
    answer, answers = namespace["answer"], namespace["answers"]
    assert isinstance(answer, pinid.Answer) and answer.user in namespace["model"].users
    assert answer.candidates[0].evidence.pin_id.startswith("oc-")
    assert capsys.readouterr().out.split()[-1] == answer.candidates[0].evidence.pin_id
    assert [a.used for a in answers] == [["text", "image"], ["image"]]
    assert (in_corpus / "my-model" / "model.json").is_file()


TOPICS = {
    "ana": "crochet yarn stitch",
    "ben": "engine wheel garage",
    "cleo": "basil tomato oven",
    "dev": "comet orbit telescope",
}


@pytest.mark.slow
def test_readmes_pin_classifier_block_runs_in_cross_val_score(tmp_path, monkeypatch):
    import pandas as pd

    rows = []
    for u, (user, topic) in enumerate(TOPICS.items()):
        for i in range(9):
            write_image(tmp_path / f"{user}{i}.png", seed=10 * u + i)
            words = topic.split()
            rows.append({"text": f"{words[i % 3]} {words[(i + 1) % 3]} pin", "user": user,
                         "image": f"{user}{i}.png"})  # fmt: skip
    monkeypatch.chdir(tmp_path)
    namespace = {"pinid": pinid, "pins": pd.DataFrame(rows)}
    exec(compile(_python_blocks()[1], "README.md", "exec"), namespace)
    scores = namespace["scores"]
    assert len(scores) == 3 and np.all((scores >= 0) & (scores <= 1))
    assert scores.mean() > 0.8  # each user's words are their own


@pytest.fixture(scope="module")
def demo_like(sample_corpus, tmp_path_factory) -> pinid.Model:
    model = pinid.train(sample_corpus)
    model.save(tmp_path_factory.mktemp("api") / "model")
    return model


def test_identify_returns_an_answer_whose_candidates_carry_evidence(demo_like):
    model = pinid.load(demo_like.name)
    answer = model.identify(text="red apple fruit", image=None)
    assert isinstance(answer, pinid.Answer) and answer.used == ["text"]
    assert len(answer.candidates) == len(model.users) == 4
    assert answer.user == answer.candidates[0].user and answer.probability is not None
    for candidate in answer.candidates:
        assert candidate.evidence.pin_id in model.pins.pin_ids
        assert candidate.image_prob is None and 0 <= candidate.text_prob <= 1
    assert sum(c.probability for c in answer.candidates) == pytest.approx(1.0)


def test_the_api_answers_like_the_model_it_saved(demo_like, sample_corpus):
    pins = [json.loads(line) for line in sample_corpus.read_text().splitlines()][:6]
    texts = [p["text"] for p in pins]
    images = [sample_corpus.parent / p["image"] for p in pins]
    before = demo_like.identify_many(texts, images)
    after = pinid.load(demo_like.name).identify_many(texts, images)
    assert [a.model_dump() for a in after] == [a.model_dump() for a in before]


def test_a_batch_answered_in_chunks_gets_the_answers_of_one_batch(
    demo_like, sample_corpus, tmp_path, monkeypatch
):
    """Chunks of 3 pins (a chunk's pins x users bounded), with unusable pins among them: the
    same answers, their probabilities to float32 rounding (the products' shapes differ)."""
    from pinid import api

    pins = [json.loads(line) for line in sample_corpus.read_text().splitlines()][:8]
    texts = [p["text"] for p in pins] + ["※※※ ¶¶¶", None]
    images = [sample_corpus.parent / p["image"] for p in pins] + [None, tmp_path / "gone.png"]
    whole = demo_like.identify_many(texts, images)
    monkeypatch.setattr(api, "ANSWER_SCORES", 3 * len(demo_like.users))
    chunked = demo_like.identify_many(texts, images)
    numbers = ("probability", "text_prob", "image_prob")
    for one, other in zip(chunked, whole, strict=True):
        a, b = one.model_dump(), other.model_dump()
        np.testing.assert_allclose(_numbers(a, numbers), _numbers(b, numbers), rtol=1e-4)
        assert _without(a, numbers) == _without(b, numbers)
    assert chunked[-2].candidates == [] and "unreadable" in chunked[-1].image_error
    assert len(chunked) == 10 and all(a.candidates for a in chunked[:8])


def _numbers(answer: dict, fields: tuple[str, ...]) -> list[float]:
    rows = [answer, *answer["candidates"]]
    values = [row[f] for row in rows for f in fields if f in row]
    return [np.nan if v is None else v for v in values]


def _without(answer: dict, fields: tuple[str, ...]) -> dict:
    drop = lambda row: {k: v for k, v in row.items() if k not in fields}  # noqa: E731
    return {**drop(answer), "candidates": [drop(c) for c in answer["candidates"]]}


def test_identify_names_what_it_could_not_use(demo_like, tmp_path):
    with pytest.raises(DataError, match="give a text, an image or both"):
        demo_like.identify()
    with pytest.raises(DataError, match="nothing to identify"):
        demo_like.identify(text="※※※ ¶¶¶")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=f"{broken}: unreadable"):
        demo_like.identify(text="bird", image=broken)
    many = demo_like.identify_many(["※※※ ¶¶¶", "bird"], [None, broken])
    assert many[0].user is None and many[0].candidates == [] and many[0].text_note
    assert many[1].used == ["text"] and "unreadable" in many[1].image_error


@pytest.mark.parametrize("rejecting", [False, True])
def test_a_batchs_json_lines_are_its_answers_dumped(demo_like, sample_corpus, tmp_path,
                                                    rejecting):  # fmt: skip
    from pydantic_core import to_json

    """predict --data's lines, written from the arrays, are pydantic's JSON of each answer's
    model_dump with its pin id first: pins with text and image, text only, image only, text
    unknown, nothing usable, an unreadable image, "unknown" answers, non-ASCII texts, top 3;
    and an answer built and changed first is written as changed."""
    pins = [json.loads(line) for line in sample_corpus.read_text().splitlines()][:6]
    texts = [p["text"] for p in pins] + ["※※※ ¶¶¶", None, "red apple — pomme rouge", "bird"]
    images = [sample_corpus.parent / p["image"] for p in pins[:3]] + [None] * 3 + [
        sample_corpus.parent / pins[4]["image"], None, None, tmp_path / "gone.png"]  # fmt: skip
    model = pinid.load(demo_like.name, reject_below=None)
    if rejecting:  # about half the answers "unknown"
        answered = [a.probability for a in model.identify_many(texts, images) if a.candidates]
        model = pinid.load(demo_like.name, reject_below=float(np.median(answered)))
    ids = [f"q{i}é" for i in range(len(texts))]
    for top in (10, 3):
        answers = model.identify_many(texts, images, top=top)
        lines = list(answers.json_lines(ids))
        expected = [to_json({"pin_id": i, **a.model_dump()}).decode() + "\n"
                    for i, a in zip(ids, model.identify_many(texts, images, top=top),
                                    strict=True)]  # fmt: skip
        assert lines == expected
        assert answers.top_users() == [json.loads(line)["user"] for line in lines]
        assert ("unknown" in answers.top_users()) == rejecting
    assert {json.loads(line)["used"] == [] for line in lines} == {True, False}
    answers[0].user = "changed"
    assert json.loads(next(answers.json_lines(ids)))["user"] == "changed"
    assert answers.top_users()[0] == "changed"
    with pytest.raises(ValueError, match="pin ids"):
        next(answers.json_lines(ids[1:]))


def test_train_takes_records_with_images_relative_to_a_root(sample_corpus):
    rows = [json.loads(line) for line in sample_corpus.read_text().splitlines()]
    model = pinid.train(rows, root=sample_corpus.parent)
    assert sorted(model.users) == sorted({r["user"] for r in rows})
    with pytest.raises(DataError, match="escapes the data folder"):
        pinid.train([{**rows[0], "image": "../x.png"}, *rows[1:]], root=sample_corpus.parent)


def test_import_pinid_loads_neither_torch_nor_the_models():
    code = "import sys, pinid; print(sorted({'torch', 'sklearn', 'pinid.api'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
