"""The HTTP control plane (FastAPI): health, metrics, status, models, retrain, predict.

``/healthz``, ``/readyz`` and ``/metrics`` are open; every ``/v1/*`` route needs
``Authorization: Bearer <token>`` (compared in constant time). Request bodies are
strict: unknown fields, wrong types and out-of-range values get a 422 naming the field.
``HTTPException`` appears in this module only.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from daemon.ingest import IngestHealth
from daemon.metrics import Metrics

__all__ = ["ControlPlane", "NotFound", "Readiness", "Refused", "Unavailable", "create_app"]


@dataclass(frozen=True)
class Readiness:
    """Inputs to ``/readyz``, read on each request."""

    ingest: Callable[[], IngestHealth]
    schema_current: Callable[[], bool]


class ControlPlane(Protocol):
    """What the routes need from the daemon; :class:`daemon.runtime.Daemon` provides it."""

    def status(self) -> dict[str, Any]: ...
    def list_models(self) -> list[dict[str, Any]]: ...
    def show_model(self, version: str) -> dict[str, Any] | None: ...
    def promote(self, version: str, *, actor: str, reason: str | None, force: bool) -> dict[str, Any]: ...
    def rollback(self, *, actor: str, reason: str | None) -> dict[str, Any]: ...
    def retrain(self, *, requested_by: str | None) -> dict[str, Any]: ...
    def list_runs(self, limit: int) -> list[dict[str, Any]]: ...
    def get_run(self, run_id: int) -> dict[str, Any] | None: ...
    def predict(self, texts: list[str]) -> dict[str, Any]: ...


class Refused(Exception):
    """The daemon refused an action; becomes 409 with the reason."""


class Unavailable(Exception):
    """Nothing can answer yet (e.g. no production model); becomes 503."""


class NotFound(Exception):
    """The named thing (a version) does not exist; becomes 404."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromoteRequest(_Strict):
    force: bool = Field(default=True, description="Bypass the gate (recorded as forced).")
    reason: str | None = Field(default=None, max_length=2000)
    actor: str = Field(default="operator", min_length=1, max_length=200)


class RollbackRequest(_Strict):
    reason: str | None = Field(default=None, max_length=2000)
    actor: str = Field(default="operator", min_length=1, max_length=200)


class RetrainRequest(_Strict):
    requested_by: str | None = Field(default=None, max_length=200)


class PredictRequest(_Strict):
    texts: list[str] = Field(min_length=1)


def create_app(
    *,
    metrics: Metrics,
    readiness: Readiness,
    version: str,
    token: str,
    control: ControlPlane | None = None,
    max_batch: int = 64,
    max_text_chars: int = 10_000,
) -> FastAPI:
    """The ASGI app. Without ``control`` only the open routes exist (ingest-only use)."""
    if not token:
        raise ValueError("the API needs a non-empty bearer token")
    app = FastAPI(title="lifelong", version=version, docs_url="/docs", redoc_url=None)
    bearer = HTTPBearer(auto_error=False)
    expected = token.encode("utf-8")

    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        given = credentials.credentials.encode("utf-8") if credentials else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Unavailable)
    async def _unavailable(_: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": version}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        health = readiness.ingest()
        checks = {"broker": health.broker_connected, "database": health.database_ok,
                  "ingest": not health.failing, "schema": readiness.schema_current()}
        ready = all(checks.values())
        body = {"status": "ready" if ready else "not_ready", "checks": checks, "assigned": health.assigned,
                "last_error": health.last_error}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if control is None:
        return app
    guarded = [Depends(authorized)]

    @app.get("/v1/status", dependencies=guarded)
    def status() -> dict[str, Any]:
        return control.status()

    @app.get("/v1/models", dependencies=guarded)
    def models() -> list[dict[str, Any]]:
        return control.list_models()

    @app.get("/v1/models/{version}", dependencies=guarded)
    def model(version: str) -> dict[str, Any]:
        found = control.show_model(version)
        if found is None:
            raise HTTPException(status_code=404, detail=f"version {version!r} does not exist")
        return found

    @app.post("/v1/models/{version}/promote", dependencies=guarded)
    def promote(version: str, body: PromoteRequest | None = None) -> dict[str, Any]:
        body = body or PromoteRequest()
        return control.promote(version, actor=body.actor, reason=body.reason, force=body.force)

    @app.post("/v1/rollback", dependencies=guarded)
    def rollback(body: RollbackRequest | None = None) -> dict[str, Any]:
        body = body or RollbackRequest()
        return control.rollback(actor=body.actor, reason=body.reason)

    @app.post("/v1/retrain", dependencies=guarded, status_code=202)
    def retrain(body: RetrainRequest | None = None) -> dict[str, Any]:
        return control.retrain(requested_by=(body or RetrainRequest()).requested_by)

    @app.get("/v1/runs", dependencies=guarded)
    def runs(limit: int = 50) -> list[dict[str, Any]]:
        if not 1 <= limit <= 1000:
            raise HTTPException(status_code=422, detail="limit must be between 1 and 1000")
        return control.list_runs(limit)

    @app.get("/v1/runs/{run_id}", dependencies=guarded)
    def run(run_id: int) -> dict[str, Any]:
        found = control.get_run(run_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"run {run_id} does not exist")
        return found

    @app.post("/v1/predict", dependencies=guarded)
    def predict(body: PredictRequest) -> dict[str, Any]:
        problem = _predict_input_problem(body.texts, max_batch=max_batch, max_text_chars=max_text_chars)
        if problem is not None:
            metrics.predict_requests.labels(result="rejected").inc()
            raise HTTPException(status_code=problem[0], detail=problem[1])
        return control.predict(body.texts)

    return app


def _predict_input_problem(texts: list[str], *, max_batch: int, max_text_chars: int) -> tuple[int, str] | None:
    """(status, message) for texts the model must not see, None when they are fine."""
    if len(texts) > max_batch:
        return 413, f"{len(texts)} texts exceed the batch limit of {max_batch}"
    for i, text in enumerate(texts):
        if not text.strip():
            return 422, f"texts[{i}] is empty"
        if len(text) > max_text_chars:
            return 413, f"texts[{i}] has {len(text)} characters, limit is {max_text_chars}"
    return None
