"""The ``lifelong`` command line: the commands and their options.

What a command prints is in ``daemon.control.render``; ``lifelong train``'s pipeline in
``daemon.control.offline_train``; everything else goes through a running daemon's API
(``daemon.control.client``) or, for the commands that start one, ``daemon.runtime``.

Every command loads the same settings (``--config`` YAML plus ``LIFELONG_*``
environment); errors print one line to stderr and exit non-zero (2 for bad
configuration or input, 1 for a failure at run time).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from sqlmodel import Session

from daemon.config import ConfigError, Settings, load_settings, masked_dump
from daemon.control import render
from daemon.control.bench_cli import bench_app
from daemon.control.client import ApiError, ControlClient
from daemon.ingest.broker import BrokerError, EmbeddedBroker, create_topics
from daemon.ingest.produce import ProduceError, produce_values, read_values
from daemon.logs import configure_logging
from learners.errors import LearnerError
from storage.engine import current_revision, ensure_schema_current, head_revision, make_engine, upgrade
from storage.errors import StorageError
from storage.stats import IngestSummary, ingest_summary

__all__ = ["app"]

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="lifelong",
    help="Continual-learning model lifecycle daemon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
models_app = typer.Typer(help="Model versions: list, show, promote, roll back (via the running daemon).",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")
runs_app = typer.Typer(help="Training runs: what started them, each step's outcome and timing (via the daemon).",
                       no_args_is_help=True)
app.add_typer(runs_app, name="runs")
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
data_app = typer.Typer(help="Stored data: forget samples on request, list deletions (via the daemon).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
labels_app = typer.Typer(help="Labels: list with counts and F1, rename, merge, retire (via the daemon).",
                         no_args_is_help=True)
app.add_typer(labels_app, name="labels")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(bench_app, name="bench")

_USER_ERRORS = (ConfigError, ProduceError, ValueError)
_RUN_ERRORS = (StorageError, BrokerError, TimeoutError, RuntimeError, OSError, LearnerError, ApiError)


@contextmanager
def _errors_as_one_line() -> Iterator[None]:
    try:
        yield
    except _USER_ERRORS as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except _RUN_ERRORS as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _settings(ctx: typer.Context, **overrides: Any) -> Settings:
    settings = load_settings(ctx.obj["config"], **overrides)
    configure_logging(ctx.obj["log_level"] or settings.logging.level, json_format=settings.logging.json_format)
    return settings


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="LIFELONG_CONFIG_FILE", help="YAML configuration file."),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="Override logging.level (DEBUG, INFO, ...).")] = None,
) -> None:
    ctx.obj = {"config": config, "log_level": log_level}


# ---------------------------------------------------------------------- run / demo


@app.command()
def run(
    ctx: typer.Context,
    migrate: Annotated[bool, typer.Option(help="Apply pending database migrations first.")] = False,
) -> None:
    """Run the daemon: ingest from Kafka (embedded broker when none is configured) until SIGTERM."""
    from daemon.runtime import Daemon

    with _errors_as_one_line():
        settings = _settings(ctx)
        if migrate:
            settings.database.auto_migrate = True
        Daemon(settings).run_forever()


@app.command()
def demo(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(help="JSONL/CSV dataset instead of the bundled CLINC150 sample.")] = None,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its database and files.")] = Path(
        "lifelong-demo"
    ),
    stages: Annotated[int, typer.Option(min=1, help="How many stages to stream the labels in.")] = 4,
    quick: Annotated[bool, typer.Option(help="Two stages, for a shorter run.")] = False,
    fresh: Annotated[bool, typer.Option(help="Delete the work directory's database and models first.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per stage.")] = False,
    train: Annotated[bool, typer.Option(help="Retrain after each stage (--no-train: ingest only).")] = True,
    baseline: Annotated[bool, typer.Option(help="Also fine-tune a naive model per stage and compare.")] = True,
) -> None:
    """Run everything embedded, stream a sample dataset in stages and retrain after each."""
    from daemon.control.demo import run_demo, write_demo_report

    with _errors_as_one_line():
        settings = _settings(
            ctx,
            data_dir=workdir,
            database={"url": f"sqlite:///{workdir / 'lifelong.db'}", "auto_migrate": True},
            kafka={"bootstrap_servers": None},
            api={"port": 0},
            # The demo narrates on stdout; its logs stay at WARNING unless --log-level says otherwise.
            logging={"level": "WARNING"},
        )
        if fresh:
            import shutil

            for suffix in ("", "-wal", "-shm"):
                (workdir / f"lifelong.db{suffix}").unlink(missing_ok=True)
            shutil.rmtree(workdir / "models", ignore_errors=True)

        stage_rows: list[dict[str, Any]] = []

        def report(stage: str, summary: IngestSummary, info: dict[str, Any]) -> None:
            stage_rows.append({"stage": stage, **info, "status": render.summary_dict(summary)})
            if as_json:
                typer.echo(json.dumps(stage_rows[-1]))
                return
            if len(stage_rows) == 1:
                api = info["api"]
                render.console.print(f"daemon API at {api}/v1 (token in {workdir / 'api-token'}), "
                               f"Prometheus metrics at {api}/metrics, while the demo runs")
            render.console.print(
                f"[bold]{stage}[/bold]: sent {info['sent']} records with {len(info['new_labels'])} new labels "
                f"-> stored {summary.counts.train} train / {summary.counts.held_out} held-out samples over "
                f"{summary.counts.labels} labels, {sum(summary.dead_letters.values())} dead letters"
            )
            retrained = info.get("retrain")
            if retrained:
                render.retrain_result(retrained)
            held = info.get("held_out_accuracy")
            if held:
                render.console.print(f"  on every held-out sample so far: served model {render.score(held['served'])}, "
                               f"naive fine-tuning {render.score(held['naive'])}")
            render.console.print(f"  ({info['seconds']}s)")

        summary = run_demo(
            settings, data=data, stages=2 if quick else stages, include_bad_records=data is None, report=report,
            train=train, baseline=baseline,
        )
        report_path = write_demo_report(workdir, stage_rows)
        if not as_json:
            render.stage_table(stage_rows)
            render.ingest_summary(summary)
            render.console.print(f"report: {report_path} (chart: {report_path.with_suffix('.png')})")
            render.console.print(f"database: {settings.database_url}  (inspect with: lifelong status)")


# ---------------------------------------------------------------------- broker / produce


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 9092,
    topics: Annotated[list[str] | None, typer.Option("--topic", help="Topic to create (repeatable).")] = None,
    partitions: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Run the embedded Kafka-compatible broker in the foreground (in-memory, for local development)."""
    configure_logging("INFO")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with _errors_as_one_line():
        with EmbeddedBroker(port=port or None) as running:
            create_topics(running.bootstrap_servers, topics or ["lifelong.samples"], partitions=partitions)
            typer.echo(f"broker listening on {running.bootstrap_servers} (Ctrl-C to stop; data is in memory)")
            sys.stdout.flush()
            while not stop.wait(0.5):
                if not running.running:
                    raise BrokerError("broker process exited")


@app.command()
def produce(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", help="A .jsonl or .csv file.")],
    topic: Annotated[str | None, typer.Option(help="Target topic (default: the first of kafka.topics).")] = None,
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="host:port[,host:port] (default: kafka.bootstrap_servers).")
    ] = None,
) -> None:
    """Send every record of a JSONL or CSV file to a topic."""
    with _errors_as_one_line():
        settings = _settings(ctx)
        servers = bootstrap_servers.split(",") if bootstrap_servers else settings.kafka.bootstrap_servers
        if not servers:
            raise ConfigError("no broker to produce to: pass --bootstrap-servers or set kafka.bootstrap_servers")
        target = topic or settings.kafka.topics[0]
        sent = produce_values(
            read_values(file),
            bootstrap_servers=servers,
            topic=target,
            client_options=settings.kafka.client_security_options(),
        )
        typer.echo(f"produced {sent} records to {target}")


# ---------------------------------------------------------------------- train


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="JSONL/CSV of labeled records; every valid one is a training example.")],
    output: Annotated[Path, typer.Option(help="Directory to write the candidate into (must not exist).")],
    parent: Annotated[Path | None, typer.Option(help="Continue from this candidate (default: the base model).")] = None,
    strategy: Annotated[str | None, typer.Option(help="Override training.strategy.name.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override training.strategy.epochs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a candidate offline from a file, in a worker process, with a progress bar.

    Replay needs the texts of the parent's buffer members, which live in the daemon's
    database; offline training from a parent therefore continues its learner state
    (EWC, SI, LwF) but rehearses nothing.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from daemon.control.offline_train import train_offline

    with _errors_as_one_line():
        settings = _settings(ctx)
        columns = (TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[rate]:.1f} ex/s loss {task.fields[loss]:.3f}"), TimeRemainingColumn())
        with Progress(*columns, console=render.console, disable=as_json, transient=False) as bar:
            task = bar.add_task("training", total=None, epoch="-", rate=0.0, loss=0.0)

            def on_progress(report: Any) -> None:
                total = report.epochs * report.steps_per_epoch
                done = (report.epoch - 1) * report.steps_per_epoch + report.step
                bar.update(task, total=total, completed=done, epoch=f"{report.epoch}/{report.epochs}",
                           rate=report.examples_per_second, loss=report.loss)

            done = train_offline(settings, data=data, output=output, parent=parent, strategy=strategy, epochs=epochs,
                                 on_progress=on_progress)
        if as_json:
            typer.echo(json.dumps({**done.result.to_dict(), "rejected_records": done.rejected}, indent=2))
            return
        render.train_result(done.result, examples=done.examples, rejected=done.rejected)


# ---------------------------------------------------------------------- status


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    url: Annotated[str | None, typer.Option(
        "--url", envvar="LIFELONG_URL",
        help="Ask a running daemon (adds serving, training and trigger state); without it, read the database.",
    )] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="LIFELONG_TOKEN", help="Bearer token.")] = None,
) -> None:
    """What is stored: samples by split, labels, dead letters by reason, partition offsets and lag."""
    if url is not None:
        with _errors_as_one_line(), _client(ctx, url, token) as client:
            reported = client.request("GET", "/v1/status")
        if as_json:
            typer.echo(json.dumps(reported, indent=2))
        else:
            render.daemon_status(reported)
        return
    with _errors_as_one_line():
        settings = _settings(ctx)
        engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
        try:
            ensure_schema_current(engine)
            with Session(engine) as session:
                summary = ingest_summary(session)
        finally:
            engine.dispose()
        if as_json:
            typer.echo(json.dumps(render.summary_dict(summary), indent=2))
        else:
            render.ingest_summary(summary)


# ---------------------------------------------------------------------- talking to the daemon

UrlOption = Annotated[str | None, typer.Option("--url", envvar="LIFELONG_URL",
                                                help="Daemon API (default: http://<api.host>:<api.port>).")]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="LIFELONG_TOKEN",
                                                  help="Bearer token (default: api.token or <data_dir>/api-token).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _client(ctx: typer.Context, url: str | None, token: str | None) -> ControlClient:
    from daemon.runtime import token_file

    settings = _settings(ctx)
    if token is None and settings.api.token is not None:
        token = settings.api.token.get_secret_value()
    if token is None:
        path = token_file(settings)
        if not path.is_file():
            raise ConfigError(f"no API token: pass --token, set LIFELONG_TOKEN or api.token (no {path})")
        token = path.read_text(encoding="utf-8").strip()
    return ControlClient(url or f"http://{settings.api.host}:{settings.api.port}", token)


@models_app.command("list")
def models_list(ctx: typer.Context, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Every version with its lineage, aliases, headline metrics and decision."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        versions = client.request("GET", "/v1/models")
        if as_json:
            typer.echo(json.dumps(versions, indent=2))
            return
        render.models_table(versions)


@runs_app.command("list")
def runs_list(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest first.")] = 20,
              url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Recent runs: trigger, status and outcome, candidate, examples, duration, why it failed."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        runs = client.request("GET", f"/v1/runs?limit={limit}")
        if as_json:
            typer.echo(json.dumps(runs, indent=2))
            return
        render.runs_table(runs)


@runs_app.command("show")
def runs_show(ctx: typer.Context, run_id: int, url: UrlOption = None, token: TokenOption = None,
              as_json: JsonOption = False) -> None:
    """One run with every step's outcome, timing and details."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        run = client.request("GET", f"/v1/runs/{run_id}")
        if as_json:
            typer.echo(json.dumps(run, indent=2))
            return
        render.run_detail(run)


@models_app.command("show")
def models_show(ctx: typer.Context, version: str, url: UrlOption = None, token: TokenOption = None,
                as_json: JsonOption = False) -> None:
    """One version: lineage, hyper-parameters, evaluation, and every decision with its checks."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        shown = client.request("GET", f"/v1/models/{version}")
        if as_json:
            typer.echo(json.dumps(shown, indent=2))
            return
        render.model_detail(shown)


@models_app.command("promote")
def models_promote(ctx: typer.Context, version: str,
                   reason: Annotated[str, typer.Option(help="Why (recorded with the forced promotion).")],
                   actor: Annotated[str, typer.Option(help="Who is promoting.")] = "operator",
                   url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Force-promote a version past the gate (recorded as forced, with your reason)."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        result = client.request("POST", f"/v1/models/{version}/promote",
                                {"force": True, "reason": reason, "actor": actor})
        typer.echo(json.dumps(result) if as_json else f"production is now {result['production']} "
                   f"(was {result['previous'] or 'none'})")


@models_app.command("rollback")
def models_rollback(ctx: typer.Context, reason: Annotated[str, typer.Option(help="Why (recorded).")],
                    actor: Annotated[str, typer.Option(help="Who is rolling back.")] = "operator",
                    url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Serve the previous production version again (a second rollback in a row is refused)."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        result = client.request("POST", "/v1/rollback", {"reason": reason, "actor": actor})
        typer.echo(json.dumps(result) if as_json else f"production is now {result['production']} "
                   f"(rolled back from {result['rolled_back_from']})")


@app.command()
def predict(ctx: typer.Context, texts: Annotated[list[str], typer.Argument(help="Texts to classify.")],
            url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Labels and probabilities from the production model."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        result = client.request("POST", "/v1/predict", {"texts": texts})
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        render.predictions(texts, result)


@app.command()
def retrain(ctx: typer.Context,
            wait: Annotated[bool, typer.Option(help="Wait for the run to finish, showing progress.")] = False,
            rebuild: Annotated[bool, typer.Option(
                help="Train from the base model on all remaining data, not from production "
                     "(a model that never saw forgotten samples).")] = False,
            url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Start a retrain now (or get the one already running)."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        ticket = client.request("POST", "/v1/retrain", {"requested_by": "cli", "rebuild": rebuild})
        _follow_run(client, ticket, wait=wait, as_json=as_json)


def _follow_run(client: ControlClient, ticket: dict[str, Any], *, wait: bool, as_json: bool) -> None:
    """Print a started run, or with ``wait`` show its progress until it ends."""
    import time

    if not wait:
        typer.echo(json.dumps(ticket) if as_json else
                   f"run {ticket['run_id']} {'started' if ticket['started'] else 'already running'}")
        return
    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(TextColumn("run {task.fields[run]} {task.fields[phase]}"), BarColumn(),
                  TextColumn("{task.fields[rate]}"), console=render.console, disable=as_json) as bar:
        task = bar.add_task("retrain", total=None, run=ticket["run_id"], phase="starting", rate="")
        while True:
            run = client.request("GET", f"/v1/runs/{ticket['run_id']}")
            if run["status"] != "running":
                break
            progress = client.request("GET", "/v1/status").get("progress")
            if progress:
                total = progress["epochs"] * progress["steps_per_epoch"]
                done = (progress["epoch"] - 1) * progress["steps_per_epoch"] + progress["step"]
                bar.update(task, total=total, completed=done, phase=f"epoch {progress['epoch']}/{progress['epochs']}",
                           rate=f"{progress['examples_per_second']:.1f} ex/s")
            else:
                bar.update(task, phase=(run["steps"][-1]["step"] + " done") if run["steps"] else "starting")
            time.sleep(1.0)
    if as_json:
        typer.echo(json.dumps(run, indent=2))
    else:
        render.run_line(run)
    if run["status"] in ("failed", "cancelled"):
        raise typer.Exit(1)


ReasonOption = Annotated[str | None, typer.Option(help="Why (kept with the change).")]
ActorOption = Annotated[str, typer.Option(help="Who asks.")]


@labels_app.command("list")
def labels_list(ctx: typer.Context, url: UrlOption = None, token: TokenOption = None,
                as_json: JsonOption = False) -> None:
    """Every label: samples, held out, old names, retired, held-out F1 of production."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        labels = client.request("GET", "/v1/labels")
        if as_json:
            typer.echo(json.dumps(labels, indent=2))
        else:
            render.labels_table(labels)


def _label_change(ctx: typer.Context, url: str | None, token: str | None, as_json: bool, path: str,
                  body: dict[str, Any]) -> None:
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        result = client.request("POST", path, body)
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        target = f" -> {result['target']}" if result["target"] else ""
        typer.echo(f"{result['kind']} {', '.join(result['sources'])}{target}: {result['samples']} samples; "
                   f"production is {result['production'] or 'none yet'}")


@labels_app.command("rename")
def labels_rename(ctx: typer.Context, label: str, new_name: str, reason: ReasonOption = None,
                  actor: ActorOption = "operator", url: UrlOption = None, token: TokenOption = None,
                  as_json: JsonOption = False) -> None:
    """Rename LABEL to NEW_NAME (records still sent as LABEL are stored as NEW_NAME)."""
    _label_change(ctx, url, token, as_json, "/v1/labels/rename",
                  {"label": label, "to": new_name, "reason": reason, "actor": actor})


@labels_app.command("merge")
def labels_merge(ctx: typer.Context,
                 labels: Annotated[list[str], typer.Argument(help="The labels to merge, then the target last.")],
                 reason: ReasonOption = None, actor: ActorOption = "operator", url: UrlOption = None,
                 token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Merge labels into the last one named (`merge A B C`: A and B into C, which may be new)."""
    if len(labels) < 2:
        raise typer.BadParameter("merge needs at least one label and the target: merge A B C")
    _label_change(ctx, url, token, as_json, "/v1/labels/merge",
                  {"labels": labels[:-1], "into": labels[-1], "reason": reason, "actor": actor})


@labels_app.command("retire")
def labels_retire(ctx: typer.Context, label: str, reason: ReasonOption = None, actor: ActorOption = "operator",
                  url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Stop predicting and training LABEL; its samples stay stored, for audit."""
    _label_change(ctx, url, token, as_json, "/v1/labels/retire", {"label": label, "reason": reason, "actor": actor})


@data_app.command("forget")
def data_forget(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Option("--id", help="A sample's (and logged answer's) id; repeatable.")] = None,
    before: Annotated[str | None, typer.Option(help="Samples stored before this ISO-8601 time (UTC if no offset).")] = None,
    meta: Annotated[list[str] | None, typer.Option(help="key=value that the sample's meta must hold; repeatable.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the deletion record).")] = None,
    actor: Annotated[str, typer.Option(help="Who asks.")] = "operator",
    retrain_clean: Annotated[bool, typer.Option(
        help="Then rebuild a model from the base model on what remains (it never saw the forgotten samples).")] = False,
    url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False,
) -> None:
    """Delete samples from storage and from every replay buffer (criteria given together must all match)."""
    from datetime import datetime, timezone

    with _errors_as_one_line():
        pairs: dict[str, str] = {}
        for item in meta or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise typer.BadParameter(f"--meta takes key=value, got {item!r}")
            pairs[key] = value
        moment = None
        if before is not None:
            try:
                moment = datetime.fromisoformat(before)
            except ValueError:
                raise typer.BadParameter(f"--before is not an ISO-8601 time: {before!r}") from None
            moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        if not (ids or moment or pairs):
            raise typer.BadParameter("name what to forget: --id, --before and/or --meta")
        body: dict[str, Any] = {"ids": ids or [], "meta": pairs, "actor": actor, "reason": reason,
                                "retrain_clean": retrain_clean}
        if moment is not None:
            body["before"] = moment.isoformat()
        with _client(ctx, url, token) as client:
            result = client.request("DELETE", "/v1/samples", body)
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            render.forget_result(result)


@data_app.command("deletions")
def data_deletions(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
                   url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Forget requests and retention passes, newest first: who, why, what went."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        entries = client.request("GET", f"/v1/deletions?limit={limit}")
        if as_json:
            typer.echo(json.dumps(entries, indent=2))
        else:
            render.deletions_table(entries)


# ---------------------------------------------------------------------- db / config


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply all pending migrations."""
    with _errors_as_one_line():
        settings = _settings(ctx)
        engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
        try:
            before = current_revision(engine)
            upgrade(engine)
            typer.echo(f"database at revision {head_revision()} (was {before or 'empty'})")
        finally:
            engine.dispose()


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the database's schema revision and the one this code needs."""
    with _errors_as_one_line():
        settings = _settings(ctx)
        engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
        try:
            typer.echo(f"database: {current_revision(engine) or 'empty'}; code: {head_revision()}")
        finally:
            engine.dispose()


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the effective configuration, secrets masked."""
    with _errors_as_one_line():
        dumped = masked_dump(_settings(ctx))
        typer.echo(json.dumps(dumped, indent=2) if as_json else yaml.safe_dump(dumped, sort_keys=False).rstrip())


if __name__ == "__main__":  # pragma: no cover - `python -m daemon.control.cli` works like `lifelong`
    app()
