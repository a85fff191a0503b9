"""A small HTTP client for the control API, used by the CLI."""

from __future__ import annotations

from typing import Any

import httpx

from daemon.errors import DaemonError

__all__ = ["ApiError", "ControlClient"]


class ApiError(DaemonError):
    """The daemon is unreachable or refused the request; the message is one line."""


class ControlClient:
    def __init__(self, url: str, token: str, *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s,
                                    headers={"Authorization": f"Bearer {token}"})

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._client.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the lifelong daemon at {self.url} (is `lifelong run` running?): "
                           f"{exc.__class__.__name__}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise ApiError(f"{response.status_code}: {detail}")
        return response.json()
