"""How the CLI shows what it got: tables and lines on the terminal, and the JSON form of a summary.

Kept apart from the commands (``daemon.control.cli``) so that a command reads as what it asks
for, and a change of wording or columns touches one place. Free text from the daemon (errors,
requesters, paths) is escaped or printed without Rich markup: ``[/data/models/v0003]`` must
show as written.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from storage.stats import IngestSummary

if TYPE_CHECKING:
    from learners.train import TrainingResult

__all__ = [
    "console", "daemon_status", "ingest_summary", "model_detail", "models_table", "predictions", "retrain_result",
    "run_detail", "run_line", "runs_table", "score", "stage_table", "summary_dict", "train_result",
]

console = Console()


def score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def stage_table(rows: list[dict[str, Any]]) -> None:
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
                      score(held.get("served")), score(held.get("naive")), f"{row['seconds']:.0f}")
    console.print(table)


def retrain_result(retrained: dict[str, Any]) -> None:
    run = retrained["run"]
    if run.get("status") != "succeeded":
        console.print(f"  retrain: {run.get('status')} ({run.get('error_reason')}: {escape(str(run.get('error')))})")
        return
    evaluation = retrained.get("candidate") or {}
    cand = (evaluation.get("candidate") or {}).get("all") or {}
    prod = (evaluation.get("production") or {}).get("all") or {}
    line = f"  candidate {run['candidate_version']}: accuracy {cand.get('accuracy', 0):.3f}, macro-F1 {cand.get('macro_f1', 0):.3f}"
    if prod:
        line += f" | production: accuracy {prod.get('accuracy', 0):.3f}, macro-F1 {prod.get('macro_f1', 0):.3f}"
    console.print(line + f" -> [bold]{run['outcome']}[/bold]; serving {retrained['production']}")
    for check in (retrained.get("gate") or {}).get("checks", []):
        console.print(f"    {'ok  ' if check['passed'] else 'FAIL'} {escape(check['detail'])}")



def summary_dict(summary: IngestSummary) -> dict[str, Any]:
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


def ingest_summary(summary: IngestSummary) -> None:
    counts = summary.counts
    console.print(
        f"samples: {counts.train + counts.held_out} ({counts.train} train, {counts.held_out} held-out); "
        f"labels: {counts.labels}; dead letters: {sum(summary.dead_letters.values())}"
    )
    if summary.dead_letters:
        table = Table("reason", "count", title="dead letters")
        for reason, n in summary.dead_letters.items():
            table.add_row(reason, str(n))
        console.print(table)
    if summary.partitions:
        table = Table("topic", "partition", "next offset", "high-watermark", "lag", title="partitions")
        for p in summary.partitions:
            table.add_row(p.topic, str(p.partition), str(p.next_offset), str(p.high_watermark), str(p.lag))
        console.print(table)



def daemon_status(reported: dict[str, Any]) -> None:
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
    console.print(table)


def models_table(versions: list[dict[str, Any]]) -> None:
    table = Table("version", "parent", "strategy", "labels", "macro-F1 (all)", "accuracy (all)", "decision",
                  "aliases", "learned forgotten")
    for v in versions:
        all_set = (v.get("metrics") or {}).get("all") or {}
        forgotten = v.get("forgotten_samples") or 0
        table.add_row(v["version"], v["parent"] or "-", v["strategy"], str(v["labels"]),
                      f"{all_set.get('macro_f1', float('nan')):.3f}", f"{all_set.get('accuracy', float('nan')):.3f}",
                      v["decision"] or "-", ",".join(v["aliases"]), f"[red]{forgotten}[/red]" if forgotten else "-")
    console.print(table)
    tainted = [v["version"] for v in versions if v.get("forgotten_samples")]
    if tainted:
        console.print(f"{len(tainted)} version(s) learned from samples since forgotten; "
                      "`lifelong retrain --rebuild` trains one from the base model on what remains.")


def labels_table(labels: list[dict[str, Any]]) -> None:
    table = Table("label", "samples", "held out", "F1 (held out)", "old names", "retired", title="labels")
    for label in labels:
        f1 = "-" if label["f1"] is None else f"{label['f1']:.3f} (n={label['f1_support']})"
        table.add_row(escape(label["name"]), str(label["samples"]), str(label["held_out"]), f1,
                      escape(", ".join(label["aliases"])) or "-", "retired" if label["retired"] else "")
    console.print(table)


def forget_result(result: dict[str, Any]) -> None:
    console.print(f"forget request {result['deletion_id']}: deleted {result['samples']} samples "
                  f"({result['heldout_samples']} held out) and {result['predictions']} logged answers",
                  markup=False, highlight=False)
    if result["versions_affected"]:
        console.print(f"versions that learned from them: {', '.join(result['versions_affected'])}"
                      + (" (production among them)" if result.get("production_learned_forgotten") else ""),
                      markup=False, highlight=False)
    rebuild = result.get("rebuild")
    if rebuild:
        console.print(f"rebuild from the base model: run {rebuild['run_id']}", markup=False, highlight=False)


def deletions_table(entries: list[dict[str, Any]]) -> None:
    table = Table("id", "at", "cause", "actor", "criteria", "samples", "predictions", "dead letters",
                  "versions affected", title="deletions")
    for e in entries:
        table.add_row(str(e["id"]), (e["at"] or "")[:19], e["cause"], escape(e["actor"]),
                      escape(json.dumps(e["criteria"])[:80]), str(e["samples"]), str(e["predictions"]),
                      str(e["dead_letters"]), ",".join(e["versions_affected"]) or "-")
    console.print(table)


def model_detail(shown: dict[str, Any]) -> None:
    console.print(f"[bold]{shown['version']}[/bold] parent={shown['parent']} strategy={shown['strategy']} "
                  f"generation={shown['generation']} aliases={shown['aliases']} checksum={shown['checksum']}")
    for key, outcome in ((shown.get("metrics") or {}).get("slices") or {}).items():
        groups = ", ".join(
            f"{escape(value)} {score(group['candidate_accuracy'])}"
            + (f" (production {score(group['production_accuracy'])})" if group.get("production_accuracy") is not None
               else "") + f" n={group['n']}"
            for value, group in outcome["groups"].items())
        console.print(f"slice {escape(key)} (coverage {outcome['coverage']:.0%}): {groups or 'no groups'}")
    for decision in shown["decisions"]:
        console.print(f"- {decision['at']} {decision['outcome']} by {escape(decision['actor'])}: "
                      f"{escape(str(decision['reason']))}")
        for check in decision["checks"]:
            mark = "ok  " if check["passed"] else "FAIL"
            console.print(f"    {mark} {escape(check['name'])}: {escape(check['detail'])}")


def runs_table(runs: list[dict[str, Any]]) -> None:
    table = Table("id", "trigger", "status", "candidate", "train", "seconds", "started", "error",
                  title="training runs")
    for run in runs:
        seconds = sum(step.get("seconds", 0) for step in run["steps"])
        status = run["status"] + (f" -> {run['outcome']}" if run["outcome"] else "")
        table.add_row(str(run["id"]), run["trigger"], status, run["candidate_version"] or "-",
                      str(run["train_examples"]), f"{seconds:.0f}", (run["started_at"] or "")[:19],
                      run["error_reason"] or "")
    console.print(table)


def run_detail(run: dict[str, Any]) -> None:
    console.print(f"run {run['id']} trigger={run['trigger']} requested_by={run['requested_by']} "
                  f"status={run['status']} outcome={run['outcome']} parent={run['parent_version']} "
                  f"candidate={run['candidate_version']}", markup=False, highlight=False)
    if run["error_reason"]:
        console.print(f"error: {run['error_reason']}: {run['error']}", markup=False)
    for step in run["steps"]:
        detail = {k: v for k, v in step.items() if k not in ("step", "status", "seconds")}
        console.print(f"- {step['step']}: {step['status']} in {step['seconds']}s {json.dumps(detail)}",
                      markup=False, highlight=False)


def run_line(run: dict[str, Any]) -> None:
    """One finished run in a line: status, outcome, why it failed, candidate."""
    console.print(f"run {run['id']}: {run['status']}"
                  f"{' -> ' + run['outcome'] if run['outcome'] else ''}"
                  f"{' (' + str(run['error_reason']) + ': ' + str(run['error']) + ')' if run['error_reason'] else ''}"
                  f"; candidate {run['candidate_version'] or '-'}", markup=False, highlight=False)


def predictions(texts: list[str], result: dict[str, Any]) -> None:
    for text, prediction in zip(texts, result["predictions"], strict=True):
        top = ", ".join(f"{label} {p:.2f}" for label, p in list(prediction["probabilities"].items())[:3])
        console.print(escape(f"{prediction['label']:<24} {text[:60]!r}  ({top})"))
    console.print(f"model {result['version']}")


def train_result(result: TrainingResult, *, examples: int, rejected: int) -> None:
    """An offline training run in a line or two."""
    console.print(
        f"{result.status}: {examples} examples ({rejected} invalid records skipped), "
        f"{len(result.labels)} labels ({len(result.new_labels)} new), "
        f"{result.examples_per_second:.1f} examples/s -> {result.output_dir or '(nothing written)'}"
    )
    if result.flagged_labels:
        console.print(f"labels with few examples: {result.flagged_labels}")
