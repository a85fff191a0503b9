"""The HTTP control plane (FastAPI): health, metrics, status, models, retrain, predict.

``/healthz``, ``/readyz`` and ``/metrics`` are open; every ``/v1/*`` route needs
``Authorization: Bearer <token>`` (compared in constant time), checked together with
the body-size limit before the body is read (:mod:`daemon.control.request_guard`). Request
bodies are strict: unknown fields, wrong types, out-of-range values and strings that
are not valid Unicode (lone surrogates) get a 422 naming the field, and a 422 never
echoes the input back (it may be huge, or not even serialisable, like ``NaN``).
``HTTPException`` appears in this module only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from daemon.control.request_guard import RequestGuard
from daemon.errors import DaemonError
from daemon.ingest.consumer import IngestHealth
from daemon.metrics import Metrics
from storage.deletion import ForgetCriteria

__all__ = ["ControlPlane", "NotFound", "Readiness", "Refused", "Unavailable", "create_app"]


@dataclass(frozen=True)
class Readiness:
    """Inputs to ``/readyz``, read on each request."""

    ingest: Callable[[], IngestHealth]
    schema_current: Callable[[], bool]


class ControlPlane(Protocol):
    """What the routes need from the daemon; :class:`daemon.control.plane.ControlOperations` provides it."""

    def status(self) -> dict[str, Any]: ...
    def list_models(self) -> list[dict[str, Any]]: ...
    def show_model(self, version: str) -> dict[str, Any] | None: ...
    def promote(self, version: str, *, actor: str, reason: str | None, force: bool) -> dict[str, Any]: ...
    def rollback(self, *, actor: str, reason: str | None) -> dict[str, Any]: ...
    def retrain(self, *, requested_by: str | None, rebuild: bool = False) -> dict[str, Any]: ...
    def forget(self, criteria: ForgetCriteria, *, actor: str, reason: str | None,
               retrain_clean: bool = False) -> dict[str, Any]: ...
    def deletions(self, limit: int) -> list[dict[str, Any]]: ...
    def labels(self) -> list[dict[str, Any]]: ...
    def change_labels(self, kind: str, *, sources: list[str], target: str | None, actor: str,
                      reason: str | None) -> dict[str, Any]: ...
    def list_runs(self, limit: int) -> list[dict[str, Any]]: ...
    def get_run(self, run_id: int) -> dict[str, Any] | None: ...
    def predict(self, texts: list[str], ids: list[str] | None = None) -> dict[str, Any]: ...


class Refused(DaemonError):
    """The daemon refused an action; becomes 409 with the reason."""


class Unavailable(DaemonError):
    """Nothing can answer yet (e.g. no production model); becomes 503."""


class NotFound(DaemonError):
    """The named thing (a version) does not exist; becomes 404."""


#: Largest id a database integer column holds; a bigger path id is a 422, not an OverflowError.
MAX_ID = 2**63 - 1


def _valid_unicode(value: str) -> str:
    """JSON's ``"\\ud800"`` escape decodes to a lone surrogate, which no tokenizer or database can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode: lone surrogate at character {exc.start}") from None
    return value


#: Every string a body may carry.
Text = Annotated[str, AfterValidator(_valid_unicode)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromoteRequest(_Strict):
    force: bool = Field(default=True, description="Bypass the gate (recorded as forced).")
    reason: Text | None = Field(default=None, max_length=2000)
    actor: Text = Field(default="operator", min_length=1, max_length=200)


class RollbackRequest(_Strict):
    reason: Text | None = Field(default=None, max_length=2000)
    actor: Text = Field(default="operator", min_length=1, max_length=200)


class RetrainRequest(_Strict):
    requested_by: Text | None = Field(default=None, max_length=200)
    #: Train from the base model on all remaining data instead of from production (e.g. after
    #: a forget request, so that the next model never saw what was forgotten).
    rebuild: bool = False


LabelName = Annotated[Text, Field(min_length=1, max_length=200)]


class _LabelChangeRequest(_Strict):
    reason: Text | None = Field(default=None, max_length=2000)
    actor: Text = Field(default="operator", min_length=1, max_length=200)


class RenameLabelRequest(_LabelChangeRequest):
    label: LabelName
    to: LabelName


class MergeLabelsRequest(_LabelChangeRequest):
    labels: list[LabelName] = Field(min_length=1, max_length=1000)
    into: LabelName


class RetireLabelRequest(_LabelChangeRequest):
    label: LabelName


#: Most ids one forget request may name (each one is looked up; more belong in several requests).
MAX_FORGET_IDS = 10_000
MetaKey = Annotated[Text, Field(min_length=1, max_length=200)]


class ForgetRequest(_Strict):
    """Which samples to delete; criteria given together must all match."""

    ids: list[Annotated[Text, Field(min_length=1, max_length=1000)]] = Field(default_factory=list,
                                                                             max_length=MAX_FORGET_IDS)
    before: AwareDatetime | None = None
    meta: dict[MetaKey, Annotated[Text, Field(max_length=1000)]] = Field(default_factory=dict, max_length=20)
    reason: Text | None = Field(default=None, max_length=2000)
    actor: Text = Field(default="operator", min_length=1, max_length=200)
    #: Then rebuild from the base model on what remains (``POST /v1/retrain {"rebuild": true}``).
    retrain_clean: bool = False

    @model_validator(mode="after")
    def _some_criterion(self) -> ForgetRequest:
        if not (self.ids or self.before or self.meta):
            raise ValueError("name what to forget: ids, before and/or meta (deleting everything is not a request)")
        return self

    def criteria(self) -> ForgetCriteria:
        return ForgetCriteria(ids=tuple(self.ids), before=self.before, meta=tuple(sorted(self.meta.items())))


#: Longest request id a predict call may carry (the prediction log's column).
MAX_REQUEST_ID_CHARS = 128
RequestId = Annotated[Text, Field(min_length=1, max_length=MAX_REQUEST_ID_CHARS)]


class PredictRequest(_Strict):
    texts: list[Text] = Field(min_length=1)
    #: One id per text, echoed in the answer and stored with the prediction; a labeled record
    #: with the same ``id`` later is joined to it (live accuracy). Generated when absent.
    ids: list[RequestId] | None = None

    @model_validator(mode="after")
    def _ids_match_texts(self) -> PredictRequest:
        if self.ids is not None:
            if len(self.ids) != len(self.texts):
                raise ValueError(f"ids: {len(self.ids)} ids for {len(self.texts)} texts (one per text)")
            if len(set(self.ids)) != len(self.ids):
                raise ValueError("ids: duplicated id in one request")
        return self


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Where and why, without the offending input (it may be 10 MB of text, or NaN)."""
    return [{"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}
            for error in exc.errors()]


def create_app(
    *,
    metrics: Metrics,
    readiness: Readiness,
    version: str,
    token: str,
    control: ControlPlane | None = None,
    max_batch: int = 64,
    max_text_chars: int = 10_000,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """The ASGI app. Without ``control`` only the open routes exist (ingest-only use).

    ``max_body_bytes`` defaults to what the largest valid predict batch can take:
    ``max_batch`` texts of ``max_text_chars`` characters, each written as a six-byte
    JSON escape, plus 64 KiB for the rest of the document.
    """
    if not token:
        raise ValueError("the API needs a non-empty bearer token")
    app = FastAPI(title="lifelong", version=version, docs_url="/docs", redoc_url=None)
    limit = max_body_bytes if max_body_bytes is not None else max_batch * max_text_chars * 6 + 64 * 1024
    app.add_middleware(RequestGuard, token=token, max_body_bytes=limit)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_errors(exc)}, status_code=422)

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
    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        return control.status()

    @app.get("/v1/models")
    def models() -> list[dict[str, Any]]:
        return control.list_models()

    @app.get("/v1/models/{version}")
    def model(version: str) -> dict[str, Any]:
        found = control.show_model(version)
        if found is None:
            raise HTTPException(status_code=404, detail=f"version {version!r} does not exist")
        return found

    @app.post("/v1/models/{version}/promote")
    def promote(version: str, body: PromoteRequest | None = None) -> dict[str, Any]:
        body = body or PromoteRequest()
        return control.promote(version, actor=body.actor, reason=body.reason, force=body.force)

    @app.post("/v1/rollback")
    def rollback(body: RollbackRequest | None = None) -> dict[str, Any]:
        body = body or RollbackRequest()
        return control.rollback(actor=body.actor, reason=body.reason)

    @app.post("/v1/retrain", status_code=202)
    def retrain(body: RetrainRequest | None = None) -> dict[str, Any]:
        body = body or RetrainRequest()
        return control.retrain(requested_by=body.requested_by, rebuild=body.rebuild)

    @app.get("/v1/labels")
    def labels() -> list[dict[str, Any]]:
        return control.labels()

    @app.post("/v1/labels/rename")
    def rename_label(body: RenameLabelRequest) -> dict[str, Any]:
        return control.change_labels("rename", sources=[body.label], target=body.to, actor=body.actor,
                                     reason=body.reason)

    @app.post("/v1/labels/merge")
    def merge_labels(body: MergeLabelsRequest) -> dict[str, Any]:
        return control.change_labels("merge", sources=body.labels, target=body.into, actor=body.actor,
                                     reason=body.reason)

    @app.post("/v1/labels/retire")
    def retire_label(body: RetireLabelRequest) -> dict[str, Any]:
        return control.change_labels("retire", sources=[body.label], target=None, actor=body.actor,
                                     reason=body.reason)

    @app.delete("/v1/samples")
    def forget_samples(body: ForgetRequest) -> dict[str, Any]:
        return control.forget(body.criteria(), actor=body.actor, reason=body.reason,
                              retrain_clean=body.retrain_clean)

    @app.get("/v1/deletions")
    def deletions(limit: int = 50) -> list[dict[str, Any]]:
        if not 1 <= limit <= 1000:
            raise HTTPException(status_code=422, detail="limit must be between 1 and 1000")
        return control.deletions(limit)

    @app.get("/v1/runs")
    def runs(limit: int = 50) -> list[dict[str, Any]]:
        if not 1 <= limit <= 1000:
            raise HTTPException(status_code=422, detail="limit must be between 1 and 1000")
        return control.list_runs(limit)

    @app.get("/v1/runs/{run_id}")
    def run(run_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict[str, Any]:
        found = control.get_run(run_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"run {run_id} does not exist")
        return found

    @app.post("/v1/predict")
    def predict(body: PredictRequest) -> dict[str, Any]:
        problem = _predict_input_problem(body.texts, max_batch=max_batch, max_text_chars=max_text_chars)
        if problem is not None:
            metrics.predict_requests.labels(result="rejected").inc()
            raise HTTPException(status_code=problem[0], detail=problem[1])
        return control.predict(body.texts, body.ids)

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
