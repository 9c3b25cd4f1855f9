"""ASGI middleware that guards the service before any endpoint code runs.

``RequestLimits`` reads each request body itself, counting bytes as they stream in (a
``Content-Length`` header is a claim, not a fact), so an oversized upload never reaches the
multipart parser: past the cap its rest is read and dropped (within bounds), then it is
answered 413. Bodies held in memory at
once share a budget (503 beyond it), and a client must keep sending (408 after an idle gap or
an overall limit), so neither large nor slow clients can exhaust memory or hang the server.
Requests without a body (the page, health checks, thumbnails) are never refused by it.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_FACTOR = 4
DRAIN_SECONDS = 30.0
"""Past the cap, the rest of a body is read and discarded (up to ``DRAIN_FACTOR`` times the cap
and ``DRAIN_SECONDS``) before the 413 is sent, as a lingering close does: a client that sends
its whole body before reading (urllib, a browser's fetch) would otherwise see the connection
reset instead of the answer."""
BUFFER_BUDGET = 256 * 1024 * 1024
"""Request bodies held in memory at once, all requests together."""
IDLE_TIMEOUT_S = 15.0
BODY_TIMEOUT_S = 120.0

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
]


async def send_json_error(send: Send, status: int, detail: str, headers=()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Disconnected(Exception):
    pass


class _OverBudget(Exception):
    pass


class _OverCap(Exception):
    def __init__(self, total: int, more: bool) -> None:
        self.total, self.more = total, more


class RequestLimits:
    """Body size cap (413), shared memory budget (503), idle and overall body time (408)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        buffer_budget: int = BUFFER_BUDGET,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.buffer_budget = buffer_budget
        self.idle_timeout_s = idle_timeout_s
        self.body_timeout_s = body_timeout_s
        self.buffered = 0
        """Bytes of request bodies currently held, all requests together."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = f"request body over the {self.max_body_bytes:,}-byte limit"
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            # A client that waits for "100 Continue" reads the refusal before sending anything;
            # reading the body (which makes the server send 100 Continue) would invite it in.
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await self._discard(receive)
            await send_json_error(send, 413, cap)
            return
        held = [0]  # this request's share of the budget, returned when it ends
        try:
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    body = await self._read_body(receive, held)
            except _OverCap as over:  # its chunks are let go before the rest is drained
                self.buffered -= held[0]
                held[0] = 0
                if over.more:
                    await self._discard(receive, over.total)
                await send_json_error(send, 413, cap)
                return
            except TimeoutError:
                late = (
                    f"request body not received within {self.body_timeout_s:g} s "
                    f"(or a pause over {self.idle_timeout_s:g} s)"
                )
                await send_json_error(send, 408, late)
                return
            except _OverBudget:
                busy = "server busy; retry shortly"
                await send_json_error(send, 503, busy, [(b"retry-after", b"1")])
                return
            except _Disconnected:
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.buffered -= held[0]

    async def _read_body(self, receive: Receive, held: list[int]) -> bytes:
        """The whole body, or :class:`_OverCap` once it exceeds the cap."""
        chunks: list[bytes] = []
        total = 0
        while True:
            async with asyncio.timeout(self.idle_timeout_s):
                message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body_bytes:
                raise _OverCap(total, bool(message.get("more_body", False)))
            if self.buffered + len(chunk) > self.buffer_budget:
                raise _OverBudget
            self.buffered += len(chunk)
            held[0] += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _discard(self, receive: Receive, total: int = 0) -> None:
        """Read and drop the rest of a body, within ``DRAIN_FACTOR`` times the cap (``total``
        bytes already read), ``DRAIN_SECONDS`` and the idle timeout."""
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while total <= DRAIN_FACTOR * self.max_body_bytes:
                    async with asyncio.timeout(self.idle_timeout_s):
                        message = await receive()
                    total += len(message.get("body", b""))
                    if message["type"] == "http.disconnect" or not message.get("more_body"):
                        return
        except TimeoutError:
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the buffered body once, then waits for disconnect."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class SecurityHeaders:
    """No MIME sniffing, no framing, no referrer, and a same-origin content security policy:
    the page shows user names and texts from the model, which must never run as code."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
