"""What pinid answers for one pin. These types are the one definition that ``pinid predict
--json``, batch predictions, the web service's responses and the Python API all serialise."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
