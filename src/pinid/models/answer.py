"""What pinid answers for one pin. These types are the one definition that ``pinid predict
--json``, batch predictions, the web service's responses and the Python API all serialise."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, overload

import numpy as np
from pydantic import BaseModel, Field
from pydantic_core import to_json

NOTHING_KNOWN = "nothing the model knows; text not used"
LINES_AT_ONCE = 1024
"""Answers :meth:`Answers.json_lines` writes at once."""


class Evidence(BaseModel):
    """The candidate's training pin most similar to the query: what a person can check."""

    pin_id: str = Field(description="that training pin's id")
    text: str = Field(description="that pin's text")
    image: str | None = Field(
        description="that pin's image as the model recorded it (a path); null in the service"
    )
    image_url: str | None = Field(
        None, description="the service's thumbnail of that pin (null outside the service)"
    )
    similarity: float = Field(description="cosine similarity of that pin to the query")


class Candidate(BaseModel):
    """One of the ten users the model ranks for a pin."""

    user: str
    probability: float = Field(description="calibrated probability that this user posted the pin")
    text_prob: float | None = Field(description="word classifier's probability (if text used)")
    image_prob: float | None = Field(description="image classifier's probability (if used)")
    evidence: Evidence


class Answer(BaseModel):
    """Who posted this pin: the answer and the ranked candidates, each with evidence."""

    user: str | None = Field(
        description='the most probable user, "unknown" below reject_below, or null when '
        "nothing in the pin was usable"
    )
    probability: float | None = Field(description="the top candidate's probability")
    reject_below: float | None = Field(description="the rejection threshold applied, if any")
    candidates: list[Candidate] = Field(description="the ranked users, most probable first")
    used: list[str] = Field(description='the modalities used: "text", "image" or both')
    text_note: str | None = Field(None, description="why a given text was not used")
    image_error: str | None = Field(None, description="why a given image could not be read")
    model: str = Field(description="the model that answered")


class PinPair(BaseModel):
    """Two pins, one of each account, that look alike: what a person can check."""

    pins: list[str] = Field(description="the two pins' ids, in the order of the accounts")
    texts: list[str] = Field(description="their texts")
    images: list[str | None] = Field(
        description="their images as the model recorded them (paths); null in the service"
    )
    image_urls: list[str | None] = Field(
        [None, None], description="the service's thumbnails of them (null outside the service)"
    )
    view: str = Field(description='where they are alike: "words", "chars" or "image"')
    similarity: float = Field(description="their cosine similarity in that view")


class AccountPair(BaseModel):
    """Two accounts that may be one person's."""

    accounts: list[str] = Field(description="the two accounts")
    score: float = Field(
        description="how likely one person runs both, in [0, 1]: the similarity mapped by a "
        "logistic learnt from accounts cut in two (a ranking with a scale, not a calibrated "
        "probability)"
    )
    evidence: list[PinPair] = Field(description="their most alike pin pairs, best first")


class Answers(Sequence[Answer]):
    """A batch's answers, held as the arrays that made them. An :class:`Answer` is built when
    first asked for (and kept, so a change to it stays); :meth:`json_lines` writes every answer
    as ``pinid predict --data`` does without building the others: for 11,700 pins, building
    every answer took about 1 s (validation, dicts, and the cycle collector's pass over them)
    and their ``model_dump`` and ``json.dumps`` as much again.

    Parameters
    ----------
    classes : ndarray
        The model's users.
    pins : TrainingPins
        Its training pins, which the evidence names.
    ranked : dict of str to ndarray
        Of the pins that have candidates, (m, k) arrays: ``users`` (class indices),
        ``probability``, ``text_prob``, ``image_prob``, ``evidence`` (training pin rows) and
        ``similarity``.
    row_of : ndarray of int
        Of every pin (n), its row in ``ranked``, or -1 where nothing in the pin was usable.
    has_text, has_image, text_unknown : ndarray of bool
        Of every pin: its text used, its image used, its text given but not known.
    reject_below : float or None
    model : str
        The model's name in the answers.
    """

    ARRAYS = ("users", "probability", "text_prob", "image_prob", "evidence", "similarity")

    def __init__(self, classes: np.ndarray, pins: Any, ranked: dict[str, np.ndarray],
                 row_of: np.ndarray, has_text: np.ndarray, has_image: np.ndarray,
                 text_unknown: np.ndarray, reject_below: float | None,
                 model: str) -> None:  # fmt: skip
        self.names: list[str] = classes.tolist()  # the users as Python strings
        self.pins, self.ranked = pins, ranked
        self.row_of, self.has_text, self.has_image = row_of, has_text, has_image
        self.text_unknown, self.reject_below, self.model = text_unknown, reject_below, model
        self.image_errors: dict[int, str] = {}
        """Why a pin's image could not be read, by pin (its answer's ``image_error``)."""
        self._built: dict[int, Answer] = {}

    def __len__(self) -> int:
        return len(self.row_of)

    @overload
    def __getitem__(self, index: int) -> Answer: ...

    @overload
    def __getitem__(self, index: slice) -> list[Answer]: ...

    def __getitem__(self, index: int | slice) -> Answer | list[Answer]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        i = range(len(self))[index]  # negative indices; IndexError past the end
        if i not in self._built:
            self._built[i] = Answer.model_validate(self._fields(i))
        return self._built[i]

    def __iter__(self) -> Iterator[Answer]:
        """Every answer, built at once with the cycle collector paused."""
        with collection_paused():
            for i in range(len(self)):
                self[i]
        return (self._built[i] for i in range(len(self)))

    def top_users(self) -> list[str | None]:
        """Every answer's ``user``, without building the answers."""
        users = []
        for i, row in enumerate(self.row_of.tolist()):
            if i in self._built:
                users.append(self._built[i].user)
            elif row < 0:
                users.append(None)
            else:
                best = self.ranked["users"][row, 0]
                users.append(self._decided(self.names[best], self.ranked["probability"][row, 0]))
        return users

    def json_lines(self, pin_ids: Sequence[str]) -> Iterator[str]:
        """Each answer as one line of JSON, ``pin_id`` first, as pydantic writes it (the
        string ``pydantic_core.to_json({"pin_id": id, **answer.model_dump()})`` and a
        newline), built from the arrays, or from the answer where one was built. Made
        :data:`LINES_AT_ONCE` at a time with the cycle collector paused."""
        if len(pin_ids) != len(self):
            raise ValueError(f"{len(pin_ids)} pin ids for {len(self)} answers")
        for start in range(0, len(self), LINES_AT_ONCE):
            with collection_paused():
                lines = [
                    to_json({"pin_id": pin_ids[i], **(
                        self._built[i].model_dump() if i in self._built else self._fields(i))}
                    ).decode() + "\n"
                    for i in range(start, min(start + LINES_AT_ONCE, len(self)))
                ]  # fmt: skip
            yield from lines

    def _decided(self, user: str, probability: float) -> str:
        """The answer's ``user``: the top candidate, or "unknown" below the threshold."""
        if self.reject_below is not None and probability < self.reject_below:
            return "unknown"
        return user

    def _fields(self, i: int) -> dict[str, Any]:
        """The answer of pin ``i`` as :class:`Answer`'s fields."""
        text, image, row = bool(self.has_text[i]), bool(self.has_image[i]), int(self.row_of[i])
        candidates = []
        if row >= 0:
            mine = {name: array[row].tolist() for name, array in self.ranked.items()}
            for c, pin in enumerate(mine["evidence"]):
                candidates.append({
                    "user": self.names[mine["users"][c]],
                    "probability": mine["probability"][c],
                    "text_prob": mine["text_prob"][c] if text else None,
                    "image_prob": mine["image_prob"][c] if image else None,
                    "evidence": {"pin_id": self.pins.pin_ids[pin], "text": self.pins.texts[pin],
                                 "image": self.pins.images[pin], "image_url": None,
                                 "similarity": mine["similarity"][c]},
                })  # fmt: skip
        best = candidates[0] if candidates else {}
        user, probability = best.get("user"), best.get("probability")
        return {
            "user": None if user is None else self._decided(user, probability),
            "probability": probability,
            "reject_below": self.reject_below,
            "candidates": candidates,
            "used": [m for m, ok in (("text", text), ("image", image)) if ok],
            "text_note": NOTHING_KNOWN if self.text_unknown[i] else None,
            "image_error": self.image_errors.get(i),
            "model": self.model,
        }


@contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cycle collector paused while a batch is encoded and its answers are built: they
    hold no cycles, and its passes over the tens of thousands of new objects cost three quarters
    of their construction (measured: 132 against 35 µs an answer)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
