"""ASGI middleware that decides about a request before anything reads its body.

FastAPI parses the body before it runs a route's dependencies, so a bearer-token
dependency alone lets an anonymous client make the daemon read and parse 50 MB
(about +95 MB of resident memory per request, measured). Here, from the headers only:

* a ``/v1/*`` request without the right token gets its 401 at once, and its body is
  never read;
* a ``Content-Length`` over the limit gets a 413 at once;
* a body without a length (chunked) is read only up to the limit, then refused.

The body that passes is handed to the app from memory, so the app's own parsing never
sees more than ``max_body_bytes``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["RequestGuard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED_PREFIX = "/v1/"


class RequestGuard:
    """Bearer-token check and body-size limit in front of the app (pure ASGI, no buffering beyond the limit)."""

    def __init__(self, app: ASGIApp, *, token: str, max_body_bytes: int) -> None:
        if not token:
            raise ValueError("the API needs a non-empty bearer token")
        self.app = app
        self._token = token.encode("utf-8")
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if scope["path"].startswith(PROTECTED_PREFIX) and not self._authorized(headers.get(b"authorization", b"")):
            await _respond(send, 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")])
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _respond(send, 400, "Content-Length is not a number")
                return
            if int(declared) > self.max_body_bytes:
                await _respond(send, 413, self._too_large())
                return
        body = await self._read_body(receive)
        if body is None:
            await _respond(send, 413, self._too_large())
            return
        await self.app(scope, _replay(body, receive), send)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, credentials = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)

    def _too_large(self) -> str:
        return f"request body exceeds the limit of {self.max_body_bytes} bytes (api.max_body_bytes)"

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """Header names lowercased (ASGI already does); the first value of a repeated header wins."""
    found: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.lower(), value)
    return found


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the already-read body once, then waits on the real channel (disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _respond(send: Send, status: int, detail: str, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps({"detail": detail}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode("ascii")),
               (b"connection", b"close"), *(extra_headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
