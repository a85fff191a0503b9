"""The HTTP control plane. For now: liveness, readiness and Prometheus metrics.

``/healthz`` answers while the process runs; ``/readyz`` answers 200 only when the
broker is reachable, the database accepts writes and its schema is current, so an
orchestrator stops routing to (or alerts on) a daemon that cannot ingest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daemon.ingest import IngestHealth
from daemon.metrics import Metrics

__all__ = ["Readiness", "create_app"]


@dataclass(frozen=True)
class Readiness:
    """Inputs to ``/readyz``, read on each request."""

    ingest: Callable[[], IngestHealth]
    schema_current: Callable[[], bool]


def create_app(*, metrics: Metrics, readiness: Readiness, version: str) -> FastAPI:
    app = FastAPI(title="lifelong", version=version, docs_url="/docs", redoc_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": version}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        health = readiness.ingest()
        schema = readiness.schema_current()
        checks = {
            "broker": health.broker_connected,
            "database": health.database_ok,
            "schema": schema,
        }
        ready = all(checks.values())
        body = {
            "status": "ready" if ready else "not_ready",
            "checks": checks,
            "assigned": health.assigned,
            "last_error": health.last_error,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
    return app
