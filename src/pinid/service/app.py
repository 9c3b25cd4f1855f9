"""The web service: a page and a JSON API that answer "who posted this pin?".

The model loads before the first request. Identification (image decoding, the CNN, the views,
the re-ranker) runs in a bounded pool off the event loop, requests that arrive together as one
micro-batch (:mod:`pinid.service.batcher`); each answer is
:meth:`pinid.api.Model.identify_features`'s, the same as ``pinid predict``'s. A retrained model
folder is taken up on SIGHUP, or as soon as it appears with ``watch``: it is loaded beside the
one in service and replaces it in one step, so each answer comes wholly from one of them; a
folder that does not load leaves the old model serving, with one line in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, NamedTuple

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pinid import __version__
from pinid.api import LINKS_MAX, LINKS_TOP, Model
from pinid.errors import PinidError
from pinid.features.images import UnreadableImage
from pinid.features.text import MAX_TEXT_CHARS
from pinid.models.answer import AccountPair, Answer
from pinid.models.io import ARRAYS, MODEL_JSON
from pinid.models.thumbnails import available_thumbnails, read_thumbnail
from pinid.service.batcher import MicroBatcher
from pinid.service.middleware import RequestLimits, SecurityHeaders
from pinid.service.pool import InferencePool, PoolBusy
from pinid.service.settings import BATCH, BATCH_WINDOW_MS, MAX_BODY_BYTES, QUEUE

STATUS_OF_IMAGE_FAULT = {"oversize": 413, "format": 415, "damaged": 422}


class Error(BaseModel):
    detail: str = Field(description="what was wrong, in one line")


class Identification(Answer):
    """The answer of ``pinid predict --json``, plus the time the request took (a request with
    nothing usable is refused, so there is always a user and a probability)."""

    user: str = Field(description='the most probable user, or "unknown" below reject_below')
    probability: float = Field(description="the top candidate's probability")
    elapsed_ms: float = Field(description="time spent on the request, queue included")


class KnownUser(BaseModel):
    user: str
    pins: int = Field(description="training pins of this user in the model")


class Users(BaseModel):
    users: list[KnownUser]


class Links(BaseModel):
    """``pinid link --json``'s pairs, their pins' images as the service's thumbnails."""

    pairs: list[AccountPair] = Field(description="pairs of accounts, most likely one person first")


class Health(BaseModel):
    status: str
    model: str
    model_id: str = Field(description="first digits of the sha256 of the model in service")
    max_body_bytes: int = Field(description="largest request body accepted")
    users: int
    training_pins: int
    extractor: str
    version: str


ERRORS = {
    400: {"model": Error, "description": "a body that is not valid form data"},
    413: {"model": Error, "description": "body over the cap, or a decompression bomb"},
    415: {"model": Error, "description": "not an image, or a format pinid does not accept"},
    422: {"model": Error, "description": "no usable text and no image, or a damaged image"},
    503: {"model": Error, "description": "identification queue full; retry shortly"},
}


class Upload(NamedTuple):
    """One identification request's pin."""

    text: str | None
    image: bytes | None
    filename: str


@dataclass(frozen=True)
class Serving:
    """A model and what the endpoints derive from it, replaced whole by a new model."""

    model: Model
    folder: Path
    row_of: dict[str, int]
    counts: Counter
    thumbnails: frozenset[int]
    name: str  # the folder's name: answers never show the server's paths
    model_id: str  # the first hex digits of its arrays' sha256
    signature: tuple | None  # the folder's, taken before the model was read from it

    @classmethod
    def of(cls, model: Model, signature: tuple | None) -> Serving:
        if model.folder is None:
            raise PinidError("the service serves a saved model: save it to a folder first")
        folder = model.folder
        row_of = {pin_id: row for row, pin_id in enumerate(model.pins.pin_ids)}
        return cls(model, folder, row_of, Counter(model.pins.users),
                   available_thumbnails(folder, len(row_of)), folder.resolve().name,
                   (model.identity or "")[:12], signature)  # fmt: skip

    def thumbnail(self, row: int) -> bytes | None:
        """A training pin's thumbnail, only while the folder still holds this model: once it is
        replaced, its thumbnails are another model's."""
        if row not in self.thumbnails or folder_signature(self.folder) != self.signature:
            return None
        return read_thumbnail(self.folder, row)

    def image_url(self, pin_id: str) -> str | None:
        row = self.row_of[pin_id]
        # the model in the URL: a browser never shows a cached thumbnail of another model's pin
        return f"/api/thumbnails/{row}?model={self.model_id}" if row in self.thumbnails else None

    def answers(self, uploads: Sequence[Upload]) -> list[Answer | UnreadableImage]:
        """The uploads' features, then their answers, each through the CNN and the model in one
        batch (with the answer it would get alone), its evidence pointing at thumbnails; an
        unreadable image fails its own upload only."""
        n = len(uploads)
        vectors = np.zeros((n, self.model.n_image_features), np.float32)
        has_image = np.zeros(n, bool)
        failed: dict[int, UnreadableImage] = {}
        rows = [row for row, upload in enumerate(uploads) if upload.image is not None]
        features = self.model.extractor.features_of_many(
            [(uploads[row].image, uploads[row].filename) for row in rows]
        )
        for row, result in zip(rows, features, strict=True):
            if isinstance(result, UnreadableImage):
                failed[row] = result
            else:
                vectors[row], has_image[row] = result, True
        good = [row for row in range(n) if row not in failed]
        texts = [uploads[row].text for row in good]
        answers = (
            self.model.identify_features(texts, vectors[good], has_image[good]) if good else []
        )
        for answer in answers:
            for candidate in answer.candidates:
                candidate.evidence.image = None
                candidate.evidence.image_url = self.image_url(candidate.evidence.pin_id)
            answer.model = self.name
        answered = iter(answers)
        return [failed[row] if row in failed else next(answered) for row in range(n)]

    def links(self, top: int) -> list[AccountPair]:
        """This model's likeliest account pairs (its linker fitted on first use), their
        evidence pointing at thumbnails."""
        pairs = self.model.links(top)
        for pair in pairs:
            for evidence in pair.evidence:
                evidence.images = [None, None]
                evidence.image_urls = [self.image_url(pin_id) for pin_id in evidence.pins]
        return pairs


def folder_signature(folder: Path) -> tuple | None:
    """What changes when a model folder is replaced or rewritten (a file of it missing is a
    change too); None while the folder itself is missing."""

    def stat(path: Path) -> tuple | None:
        try:
            found = path.stat()
        except OSError:
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    signature = tuple(stat(path) for path in (folder, folder / MODEL_JSON, folder / ARRAYS))
    return None if signature[0] is None else signature


class Service:
    """What the endpoints share: the model in service, the bounded pool, the micro-batcher
    and the swap."""

    def __init__(
        self, model: Model, queue: int, signature: tuple | None, batch: int, window_ms: float
    ) -> None:
        self.serving = Serving.of(model, signature)
        self.pool = InferencePool(queue)
        self.batcher: MicroBatcher[Upload, Answer] = MicroBatcher(
            self.pool, self.identify, max_batch=batch, window_s=window_ms / 1000
        )
        self._tried = signature  # the folder as last read, whether it loaded or not
        self._swapping = asyncio.Lock()

    def identify(self, uploads: Sequence[Upload]) -> list[Answer | UnreadableImage]:
        """Runs in the pool; the model in service when it starts answers the whole batch."""
        return self.serving.answers(uploads)

    def links(self, top: int) -> list[AccountPair]:
        """Runs in the pool; the model in service when it starts answers the whole request."""
        return self.serving.links(top)

    async def reload(self, reason: str) -> bool:
        """Load the model now in the folder beside the one in service, then swap them; a folder
        that does not load leaves the old model serving (one line in the log)."""
        async with self._swapping:
            old = self.serving
            signature = folder_signature(old.folder)  # before reading: a later change reloads
            self._tried = signature
            try:
                new = await _in_daemon_thread(_prepare, old.model, signature)
            except Exception as exc:  # whatever the folder holds, the old model keeps serving
                why = str(exc) if isinstance(exc, PinidError) else f"{type(exc).__name__}: {exc}"
                _log(f"{reason}: kept model {old.model_id} in service: {why}")
                return False
            self.serving = new
            _log(f"{reason}: now serving model {new.model_id} ({len(new.counts)} users)")
            return True

    async def watch(self, interval_s: float) -> None:
        """Reload whenever the model folder changes (a missing folder is a swap in progress)."""
        while True:
            await asyncio.sleep(interval_s)
            signature = folder_signature(self.serving.folder)
            if signature is not None and signature != self._tried:
                await self.reload("model folder changed")


def _prepare(old: Model, signature: tuple | None) -> Serving:
    """The folder's model, loaded with its CNN ready."""
    new = old.reload()
    new.extractor.threads = old.extractor.threads  # a new CNN shares the cores as the old one
    new.extractor.load()
    return Serving.of(new, signature)


async def _in_daemon_thread(fn, *args):
    """``fn(*args)`` in a daemon thread: a load still running at shutdown does not hold up the
    process's exit (the default executor's threads are waited for)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=run, name="pinid-reload", daemon=True).start()
    return await future


def _settle(future: asyncio.Future, result, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _log(message: str) -> None:
    print(f"pinid: {message}", file=sys.stderr, flush=True)


def create_app(
    model: Model,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    queue: int = QUEUE,
    batch: int = BATCH,
    batch_window_ms: float = BATCH_WINDOW_MS,
    threads: int | None = None,
    watch_s: float | None = None,
    signature: tuple | None = None,
) -> FastAPI:
    """The ASGI application for one loaded model; ``batch``: most identifications answered
    as one micro-batch (1: each alone), ``batch_window_ms``: how long a batch that follows
    another waits for more (:mod:`pinid.service.batcher`); ``threads`` caps the CNN's threads
    (for several server processes sharing the cores); ``watch_s``: look for a new model in its
    folder this often; ``signature``: its folder's (:func:`folder_signature`) as it was before
    the model was read, if known."""
    if signature is None and model.folder is not None:
        signature = folder_signature(model.folder)
    model.extractor  # noqa: B018 -- checks the installed CNN is the model's, before serving
    service = Service(model, queue, signature, batch, batch_window_ms)
    static = files("pinid.service") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")

    def load_cnn() -> None:
        extractor = service.serving.model.extractor
        extractor.threads = threads or extractor.threads
        extractor.load()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await service.pool.run(load_cnn)  # the CNN is ready for request one
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()

        def start(job) -> None:
            task = loop.create_task(job)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        hup = False
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, lambda: start(service.reload("SIGHUP")))
            hup = True
        if watch_s:
            start(service.watch(watch_s))
        yield  # the pool's idle threads end with the interpreter; a running job is finished
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(
        title="pinid",
        version=__version__,
        summary="Which user posted this pin? Ranked users with evidence for an image and text.",
        docs_url=None,  # the interactive docs load scripts from a CDN; the schema is offline
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, _exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "internal error"}, 500)  # the log has the traceback

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
            for e in exc.errors()
        )
        return JSONResponse({"detail": problems}, 422)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)  # fmt: skip
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.head("/healthz", include_in_schema=False)
    async def healthz_head() -> Response:
        return Response()

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict:
        serving = service.serving
        return {
            "status": "ok",
            "model": serving.name,
            "model_id": serving.model_id,
            "max_body_bytes": max_body_bytes,
            "users": len(serving.counts),
            "training_pins": len(serving.model.pins.pin_ids),
            "extractor": serving.model.extractor.extractor_id,
            "version": __version__,
        }

    @app.get("/api/users", response_model=Users)
    async def users() -> dict:
        ranked = sorted(service.serving.counts.items(), key=lambda item: (-item[1], item[0]))
        return {"users": [{"user": u, "pins": n} for u, n in ranked]}

    @app.get(
        "/api/links",
        response_model=Links,
        responses={
            422: {"model": Error, "description": f"top not a whole number from 1 to {LINKS_MAX}"},
            503: ERRORS[503],
        },
    )
    async def links(
        top: Annotated[int, Query(ge=1, le=LINKS_MAX, description="how many pairs")] = LINKS_TOP,
    ) -> dict:
        """Pairs of the model's users that may be one person, best first, each with its most
        alike pin pairs. The first call after a model loads fits the linker (seconds)."""
        try:
            pairs = await service.pool.run(service.links, top)
        except PoolBusy:
            raise HTTPException(503, "identification queue full; retry shortly",
                                {"retry-after": "1"}) from None  # fmt: skip
        return {"pairs": pairs}

    @app.get(
        "/api/thumbnails/{row}",
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}},
            404: {"model": Error, "description": "no such training pin, or it has no image"},
            422: {"model": Error, "description": "the row is not a non-negative integer"},
        },
    )
    async def thumbnail(
        row: Annotated[int, PathParam(ge=0)],
        model: Annotated[str | None, Query(max_length=64, description="the answer's model")] = None,
    ) -> Response:
        serving = service.serving
        data = serving.thumbnail(row) if model in (None, serving.model_id) else None
        if data is None:
            raise HTTPException(404, f"no thumbnail for training pin {row} of the model in service")
        # cached only when the URL names its model: a row's thumbnail changes with the model
        cache = "public, max-age=3600" if model else "no-cache"
        return Response(data, media_type="image/jpeg", headers={"cache-control": cache})

    @app.post("/api/identify", response_model=Identification, responses=ERRORS)
    async def identify(
        image: Annotated[UploadFile | None, File(description="the pin's image")] = None,
        text: Annotated[
            str | None, Form(max_length=MAX_TEXT_CHARS, description="the pin's text")
        ] = None,
    ) -> Identification:
        """Rank the users who may have posted a pin; give an image, a text or both."""
        started = time.perf_counter()
        # A file part with no name and no bytes is a form sent without choosing a file; a named
        # empty file is an upload, and refused as one.
        name = (image.filename or "") if image is not None else ""
        data = await image.read() if image is not None else b""
        upload = data if (data or name) else None
        if upload is None and not (text and text.strip()):
            raise HTTPException(422, "give an image, a text or both")
        try:
            answer = await service.batcher.submit(Upload(text or None, upload, name))
        except PoolBusy:
            raise HTTPException(503, "identification queue full; retry shortly",
                                {"retry-after": "1"}) from None  # fmt: skip
        except UnreadableImage as exc:
            raise HTTPException(STATUS_OF_IMAGE_FAULT[exc.kind], f"image: {exc}") from None
        if not answer.candidates:
            raise HTTPException(422, "the text has nothing the model knows, and no image was given")
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        return Identification(**dict(answer), elapsed_ms=elapsed_ms)

    app.add_middleware(RequestLimits, max_body_bytes=max_body_bytes)  # before any parsing
    app.add_middleware(SecurityHeaders)  # outermost: its own answers carry the headers too
    return app
