"""Request size limit, enforced before a handler reads the body.

A client that writes its whole body before it reads the answer (the platform's Java client does)
must always read the 413. Closing the connection while its body is still arriving makes the kernel
answer with a reset that destroys the 413 in flight, so the rest of the body is read and thrown
away first, up to :data:`DRAIN_BYTES` and :data:`DRAIN_S`; only a body beyond those bounds is cut
off (and that client may see a reset instead of the 413).
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


#: Most bytes of an oversized body read and discarded so that its client can read the 413.
DRAIN_BYTES = 64 * 1024 * 1024
#: Longest time spent discarding an oversized body.
DRAIN_S = 30.0


class BodyTooLarge(Exception):
    pass


async def _drain(receive: Receive, already: int) -> None:
    """Read and discard the rest of the request body, within the drain bounds."""
    received = already

    async def drain() -> None:
        nonlocal received
        while received <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return  # http.disconnect
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    try:
        await asyncio.wait_for(drain(), DRAIN_S)
    except TimeoutError:
        pass


class BodyLimit:
    """Answer 413 to bodies over ``max_bytes``, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False  # h11 rejects malformed lengths before we get here
                if too_large:
                    await _drain(receive, 0)
                    await self._reject(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _drain(receive, received)
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps({
            "code": "413",
            "msg": f"request body larger than {self.max_bytes} bytes",
            "data": None,
        }).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                # The connection is not reused after a body we did not take.
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
