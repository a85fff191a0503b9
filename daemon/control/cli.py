"""The ``lifelong`` command line.

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
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import Session

from daemon.config import ConfigError, Settings, load_settings, masked_dump
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
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(bench_app, name="bench")

_console = Console()
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
            stage_rows.append({"stage": stage, **info, "status": _summary_dict(summary)})
            if as_json:
                typer.echo(json.dumps(stage_rows[-1]))
                return
            if len(stage_rows) == 1:
                api = info["api"]
                _console.print(f"daemon API at {api}/v1 (token in {workdir / 'api-token'}), "
                               f"Prometheus metrics at {api}/metrics, while the demo runs")
            _console.print(
                f"[bold]{stage}[/bold]: sent {info['sent']} records with {len(info['new_labels'])} new labels "
                f"-> stored {summary.counts.train} train / {summary.counts.held_out} held-out samples over "
                f"{summary.counts.labels} labels, {sum(summary.dead_letters.values())} dead letters"
            )
            retrained = info.get("retrain")
            if retrained:
                _print_retrain(retrained)
            held = info.get("held_out_accuracy")
            if held:
                _console.print(f"  on every held-out sample so far: served model {_score(held['served'])}, "
                               f"naive fine-tuning {_score(held['naive'])}")
            _console.print(f"  ({info['seconds']}s)")

        summary = run_demo(
            settings, data=data, stages=2 if quick else stages, include_bad_records=data is None, report=report,
            train=train, baseline=baseline,
        )
        report_path = write_demo_report(workdir, stage_rows)
        if not as_json:
            _print_stage_table(stage_rows)
            _print_summary(summary)
            _console.print(f"report: {report_path} (chart: {report_path.with_suffix('.png')})")
            _console.print(f"database: {settings.database_url}  (inspect with: lifelong status)")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_stage_table(rows: list[dict[str, Any]]) -> None:
    # Narrow on purpose: it must stay readable in an 80-column terminal or a CI log.
    table = Table("stage", "new", "samples", "version", "decision", "served", "naive", "s", box=box.SIMPLE,
                  title="demo summary",
                  caption="new: new labels; served, naive: accuracy on every held-out sample so far of the "
                  "served model and of naive fine-tuning (each stage from the last, new data only); s: seconds")
    for row in rows:
        run = (row.get("retrain") or {}).get("run") or {}
        held = row.get("held_out_accuracy") or {}
        table.add_row(row["stage"].removeprefix("stage "), str(len(row["new_labels"])),
                      str(row["status"]["samples"]["total"]), run.get("candidate_version") or "-",
                      str(run.get("outcome") or run.get("status") or "not trained"),
                      _score(held.get("served")), _score(held.get("naive")), f"{row['seconds']:.0f}")
    _console.print(table)


def _print_retrain(retrained: dict[str, Any]) -> None:
    run = retrained["run"]
    if run.get("status") != "succeeded":
        _console.print(f"  retrain: {run.get('status')} ({run.get('error_reason')}: {escape(str(run.get('error')))})")
        return
    evaluation = retrained.get("candidate") or {}
    cand = (evaluation.get("candidate") or {}).get("all") or {}
    prod = (evaluation.get("production") or {}).get("all") or {}
    line = f"  candidate {run['candidate_version']}: accuracy {cand.get('accuracy', 0):.3f}, macro-F1 {cand.get('macro_f1', 0):.3f}"
    if prod:
        line += f" | production: accuracy {prod.get('accuracy', 0):.3f}, macro-F1 {prod.get('macro_f1', 0):.3f}"
    _console.print(line + f" -> [bold]{run['outcome']}[/bold]; serving {retrained['production']}")
    for check in (retrained.get("gate") or {}).get("checks", []):
        _console.print(f"    {'ok  ' if check['passed'] else 'FAIL'} {escape(check['detail'])}")


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

    from daemon.ingest.records import Limits, Rejection, validate
    from learners.data import Example
    from learners.train import TrainingSpec, load_parent_state
    from learners.worker import TrainingWorker

    with _errors_as_one_line():
        settings = _settings(ctx)
        training = settings.training
        overrides = {k: v for k, v in {"name": strategy, "epochs": epochs}.items() if v is not None}
        config = training.strategy.model_validate({**training.strategy.model_dump(), **overrides})
        first_id = 1
        if parent is not None:
            buffer_state = load_parent_state(parent).buffer_state or {}
            first_id = int(buffer_state.get("high_water") or 0) + 1
        limits = Limits(max_text_chars=settings.ingest.max_text_chars, max_label_chars=settings.ingest.max_label_chars)
        examples, rejected = [], 0
        for value in read_values(data):
            checked = validate(value, limits)
            if isinstance(checked, Rejection):
                rejected += 1
                continue
            examples.append(Example(first_id + len(examples), checked.text, checked.label))
        spec = TrainingSpec(
            output_dir=output, train=examples, strategy=config, buffer=training.buffer.to_config(),
            parent_dir=parent, base_model=training.base_model, min_samples_per_label=training.min_samples_per_label,
            device=training.device, torch_threads=training.torch_threads,
        )
        columns = (TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[rate]:.1f} ex/s loss {task.fields[loss]:.3f}"), TimeRemainingColumn())
        with Progress(*columns, console=_console, disable=as_json, transient=False) as bar:
            task = bar.add_task("training", total=None, epoch="-", rate=0.0, loss=0.0)

            def on_progress(report: Any) -> None:
                total = report.epochs * report.steps_per_epoch
                done = (report.epoch - 1) * report.steps_per_epoch + report.step
                bar.update(task, total=total, completed=done, epoch=f"{report.epoch}/{report.epochs}",
                           rate=report.examples_per_second, loss=report.loss)

            result = TrainingWorker(spec, timeout_s=training.timeout_s, on_progress=on_progress,
                                    start_method=training.worker_start).run()
        if as_json:
            typer.echo(json.dumps({**result.to_dict(), "rejected_records": rejected}, indent=2))
            return
        _console.print(
            f"{result.status}: {len(examples)} examples ({rejected} invalid records skipped), "
            f"{len(result.labels)} labels ({len(result.new_labels)} new), "
            f"{result.examples_per_second:.1f} examples/s -> {result.output_dir or '(nothing written)'}"
        )
        if result.flagged_labels:
            _console.print(f"labels with few examples: {result.flagged_labels}")


# ---------------------------------------------------------------------- status


def _summary_dict(summary: IngestSummary) -> dict[str, Any]:
    return {
        "samples": {
            "train": summary.counts.train,
            "held_out": summary.counts.held_out,
            "total": summary.counts.train + summary.counts.held_out,
        },
        "labels": {label.name: {"samples": label.samples, "held_out": label.held_out} for label in summary.labels},
        "dead_letters": dict(summary.dead_letters),
        "partitions": [
            {**asdict(p), "updated_at": p.updated_at.isoformat(), "lag": p.lag} for p in summary.partitions
        ],
    }


def _print_summary(summary: IngestSummary) -> None:
    counts = summary.counts
    _console.print(
        f"samples: {counts.train + counts.held_out} ({counts.train} train, {counts.held_out} held-out); "
        f"labels: {counts.labels}; dead letters: {sum(summary.dead_letters.values())}"
    )
    if summary.dead_letters:
        table = Table("reason", "count", title="dead letters")
        for reason, n in summary.dead_letters.items():
            table.add_row(reason, str(n))
        _console.print(table)
    if summary.partitions:
        table = Table("topic", "partition", "next offset", "high-watermark", "lag", title="partitions")
        for p in summary.partitions:
            table.add_row(p.topic, str(p.partition), str(p.next_offset), str(p.high_watermark), str(p.lag))
        _console.print(table)


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
            _print_daemon_status(reported)
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
            typer.echo(json.dumps(_summary_dict(summary), indent=2))
        else:
            _print_summary(summary)


def _print_daemon_status(reported: dict[str, Any]) -> None:
    table = Table(title="lifelong daemon", show_header=False)
    samples = reported["samples"]
    table.add_row("samples", f"{samples['total']} ({samples['train']} train, {samples['held_out']} held out)")
    table.add_row("labels", str(reported["labels"]))
    table.add_row("dead letters", str(sum(reported["dead_letters"].values())))
    table.add_row("production / serving", f"{reported['production'] or '-'} / {reported['serving'] or '-'}")
    table.add_row("active run", str(reported["active_run"] or "-"))
    last = reported.get("last_run")
    if last:
        table.add_row("last run", f"{last['id']} ({last['trigger']}): {last['status']}"
                                  f"{' -> ' + last['outcome'] if last.get('outcome') else ''}")
    training = reported.get("training") or {}
    lease = training.get("lease") or {}
    table.add_row("trainer", "this daemon" if lease.get("held_by_this_daemon") else str(lease.get("holder") or "-"))
    schedule = training.get("schedule") or {}
    table.add_row("next scheduled", str(schedule.get("next") or "-"))
    volume = training.get("volume") or {}
    if volume.get("threshold"):
        table.add_row("volume trigger", f"{volume['new_training_samples']} / {volume['threshold']} new samples")
    _console.print(table)


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
        table = Table("version", "parent", "strategy", "labels", "macro-F1 (all)", "accuracy (all)", "decision",
                      "aliases")
        for v in versions:
            all_set = (v.get("metrics") or {}).get("all") or {}
            table.add_row(v["version"], v["parent"] or "-", v["strategy"], str(v["labels"]),
                          f"{all_set.get('macro_f1', float('nan')):.3f}", f"{all_set.get('accuracy', float('nan')):.3f}",
                          v["decision"] or "-", ",".join(v["aliases"]))
        _console.print(table)


@runs_app.command("list")
def runs_list(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest first.")] = 20,
              url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Recent runs: trigger, status and outcome, candidate, examples, duration, why it failed."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        runs = client.request("GET", f"/v1/runs?limit={limit}")
        if as_json:
            typer.echo(json.dumps(runs, indent=2))
            return
        table = Table("id", "trigger", "status", "candidate", "train", "seconds", "started", "error",
                      title="training runs")
        for run in runs:
            seconds = sum(step.get("seconds", 0) for step in run["steps"])
            status = run["status"] + (f" -> {run['outcome']}" if run["outcome"] else "")
            table.add_row(str(run["id"]), run["trigger"], status, run["candidate_version"] or "-",
                          str(run["train_examples"]), f"{seconds:.0f}", (run["started_at"] or "")[:19],
                          run["error_reason"] or "")
        _console.print(table)


@runs_app.command("show")
def runs_show(ctx: typer.Context, run_id: int, url: UrlOption = None, token: TokenOption = None,
              as_json: JsonOption = False) -> None:
    """One run with every step's outcome, timing and details."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        run = client.request("GET", f"/v1/runs/{run_id}")
        if as_json:
            typer.echo(json.dumps(run, indent=2))
            return
        # Free text (errors, requesters, details) is printed without Rich markup: a path
        # like "[/data/models/v0003]" must show as written, not break the output.
        _console.print(f"run {run['id']} trigger={run['trigger']} requested_by={run['requested_by']} "
                       f"status={run['status']} outcome={run['outcome']} parent={run['parent_version']} "
                       f"candidate={run['candidate_version']}", markup=False, highlight=False)
        if run["error_reason"]:
            _console.print(f"error: {run['error_reason']}: {run['error']}", markup=False)
        for step in run["steps"]:
            detail = {k: v for k, v in step.items() if k not in ("step", "status", "seconds")}
            _console.print(f"- {step['step']}: {step['status']} in {step['seconds']}s {json.dumps(detail)}",
                           markup=False, highlight=False)


@models_app.command("show")
def models_show(ctx: typer.Context, version: str, url: UrlOption = None, token: TokenOption = None,
                as_json: JsonOption = False) -> None:
    """One version: lineage, hyper-parameters, evaluation, and every decision with its checks."""
    with _errors_as_one_line(), _client(ctx, url, token) as client:
        shown = client.request("GET", f"/v1/models/{version}")
        if as_json:
            typer.echo(json.dumps(shown, indent=2))
            return
        _console.print(f"[bold]{shown['version']}[/bold] parent={shown['parent']} strategy={shown['strategy']} "
                       f"generation={shown['generation']} aliases={shown['aliases']} checksum={shown['checksum']}")
        for decision in shown["decisions"]:
            _console.print(f"- {decision['at']} {decision['outcome']} by {escape(decision['actor'])}: "
                           f"{escape(str(decision['reason']))}")
            for check in decision["checks"]:
                mark = "ok  " if check["passed"] else "FAIL"
                _console.print(f"    {mark} {escape(check['name'])}: {escape(check['detail'])}")


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
        for text, prediction in zip(texts, result["predictions"], strict=True):
            top = ", ".join(f"{label} {p:.2f}" for label, p in list(prediction["probabilities"].items())[:3])
            _console.print(escape(f"{prediction['label']:<24} {text[:60]!r}  ({top})"))
        _console.print(f"model {result['version']}")


@app.command()
def retrain(ctx: typer.Context,
            wait: Annotated[bool, typer.Option(help="Wait for the run to finish, showing progress.")] = False,
            url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Start a retrain now (or get the one already running)."""
    import time

    with _errors_as_one_line(), _client(ctx, url, token) as client:
        ticket = client.request("POST", "/v1/retrain", {"requested_by": "cli"})
        if not wait:
            typer.echo(json.dumps(ticket) if as_json else
                       f"run {ticket['run_id']} {'started' if ticket['started'] else 'already running'}")
            return
        from rich.progress import BarColumn, Progress, TextColumn

        with Progress(TextColumn("run {task.fields[run]} {task.fields[phase]}"), BarColumn(),
                      TextColumn("{task.fields[rate]}"), console=_console, disable=as_json) as bar:
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
            _console.print(f"run {run['id']}: {run['status']}"
                           f"{' -> ' + run['outcome'] if run['outcome'] else ''}"
                           f"{' (' + str(run['error_reason']) + ': ' + str(run['error']) + ')' if run['error_reason'] else ''}"
                           f"; candidate {run['candidate_version'] or '-'}", markup=False, highlight=False)
        if run["status"] in ("failed", "cancelled"):
            raise typer.Exit(1)


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
