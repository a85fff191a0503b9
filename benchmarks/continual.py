"""``lifelong bench continual``: class-incremental learning measured through the real daemon.

Why: the product's claim — it keeps learning new labels without forgetting old ones,
and serves them soon — is only true if it holds end to end. This benchmark runs the
product loop as an operator would: an embedded Kafka-protocol broker, a fresh
``lifelong run`` process, the stages' training records produced to the topic, one
``POST /v1/retrain`` per stage, the gate deciding, and production scored through
``/v1/predict`` on the test texts of every label seen so far (texts the daemon never
received). Beside it, in the same run and on the same model, the baselines the
figures mean something against: ``naive`` fine-tuning (the lower bound), plain
``replay`` at the same buffer budget, and ``joint`` training on everything (the upper
bound). Then freshness: a second fresh daemon with a volume trigger, timed from the
last record of a stage produced to a served model that recognises the stage's labels.

Run from the repository root::

    lifelong bench continual                                   # CLINC150 15 x 10, seed 0, defaults
    lifelong bench continual --buffer-fraction 0.01 --seed 1
    lifelong bench continual --train train.csv --test test.csv --tasks 5 --classes-per-task 4

Writes ``continual.json``, ``continual.md`` and ``continual.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.continual_report import write_report
from benchmarks.daemon_driver import DaemonFailed, DaemonProcess
from benchmarks.datasets import CLINC150, Dataset, DatasetError, Stage, load_dataset, plan_stages
from benchmarks.scoring import average_incremental, forgetting, score_stage, seen_test

__all__ = ["main"]

logger = logging.getLogger(__name__)

BASELINES = ("naive", "replay", "joint")


@dataclass(frozen=True)
class Plan:
    dataset: Dataset
    stages: list[Stage]
    config: Path | None
    env: dict[str, str]
    baselines: tuple[str, ...]
    freshness: bool
    freshness_volume: int | None
    freshness_recall: float
    stage_timeout_s: float
    seed: int
    #: Stream the dataset's out-of-scope training texts (label ``oos``) and score its
    #: out-of-scope test texts at the end.
    oos: bool = False


#: The label out-of-scope texts are streamed with (the daemon's ``evaluation.oos_label``).
OOS_LABEL = "oos"


def _stage_records(plan: Plan, stage: Stage) -> list[dict[str, str]]:
    labels = set(stage.labels)
    rows = [{"id": f"bench-{stage.number}-{i}", "text": text, "label": label}
            for i, (text, label) in enumerate(p for p in plan.dataset.train if p[1] in labels)]
    if plan.oos:  # out-of-scope traffic arrives all along: an equal share with every stage
        share = plan.dataset.oos_train[stage.number - 1::len(plan.stages)]
        rows += [{"id": f"bench-{stage.number}-oos-{i}", "text": text, "label": OOS_LABEL}
                 for i, text in enumerate(share)]
    random.Random(plan.seed * 1000 + stage.number).shuffle(rows)
    return rows


def _gate_summary(model: dict[str, Any] | None) -> tuple[str | None, list[dict[str, Any]], str | None]:
    decisions = (model or {}).get("decisions") or []
    if not decisions:
        return None, [], None
    last = decisions[-1]
    return last["outcome"], last.get("checks") or [], last.get("reason")


def run_daemon_stream(plan: Plan, bootstrap_servers: str, workdir: Path, say: Any) -> dict[str, Any]:
    """The staged run through one ``lifelong run``: produce, retrain, gate, score per stage."""
    rows: list[dict[str, Any]] = []
    started_all = time.monotonic()
    with DaemonProcess(workdir / "daemon", bootstrap_servers=bootstrap_servers, topic="bench.continual",
                       config=plan.config, env=plan.env) as daemon:
        say(f"daemon up at {daemon.url} (log {daemon.log_path})")
        for stage in plan.stages:
            t0 = time.monotonic()
            sent = daemon.produce(_stage_records(plan, stage))
            daemon.wait_stored(plan.stage_timeout_s)
            t1 = time.monotonic()
            run = daemon.retrain(plan.stage_timeout_s)
            t2 = time.monotonic()
            status = daemon.api("GET", "/v1/status")
            production = status["production"]
            daemon.wait_serving(production, plan.stage_timeout_s)
            candidate = run.get("candidate_version")
            model = daemon.api("GET", f"/v1/models/{candidate}") if candidate else None
            outcome, checks, reason = _gate_summary(model)
            served = daemon.api("GET", f"/v1/models/{production}") if production else None
            scored = seen_test(plan.dataset.test, plan.stages, stage.number)
            if production is None:
                predicted: list[str | None] = [None] * len(scored)
            else:
                predicted, versions = daemon.predict([t for t, _ in scored])
                if versions != {production}:
                    raise DaemonFailed(f"stage {stage.number}: answers came from {sorted(versions)}, "
                                       f"production is {production}")
            score = score_stage(scored, [p or "" for p in predicted], plan.stages, stage.number)
            t3 = time.monotonic()
            rows.append({
                "stage": stage.number, "new_labels": stage.labels,
                "labels": sum(len(s.labels) for s in plan.stages[:stage.number]), "records_sent": sent,
                "samples": status["samples"], "accuracy": score.accuracy, "groups": score.groups,
                "new_labels_recall": score.new_labels_recall, "unserved_labels": score.unserved_labels,
                "run": {k: run.get(k) for k in ("id", "status", "outcome", "error_reason", "error",
                                                "train_examples", "replay_examples")},
                "candidate": candidate, "decision": outcome or run.get("status"), "decision_reason": reason,
                "checks": checks, "production": production,
                "buffer_size": (served or {}).get("buffer_size"),
                "seconds": {"ingest": round(t1 - t0, 2), "train_and_gate": round(t2 - t1, 2),
                            "score": round(t3 - t2, 2), "total": round(t3 - t0, 2)},
            })
            failed = [c["name"] for c in checks if not c.get("passed")]
            say(f"stage {stage.number}/{len(plan.stages)}: {rows[-1]['labels']} labels, {sent} records, "
                f"{rows[-1]['decision']}{' (' + ', '.join(failed[:3]) + ')' if failed else ''}, serving "
                f"{production}: accuracy {score.accuracy:.3f}, new labels {score.new_labels_recall:.3f}, "
                f"{t3 - t0:.0f} s")
        out_of_scope = score_out_of_scope(plan, daemon) if plan.oos and rows[-1]["production"] else None
    for row, value in zip(rows, forgetting([r["groups"] for r in rows]), strict=True):
        row["forgetting"] = value
    accuracies = [r["accuracy"] for r in rows]
    result = {"stages": rows, "final": accuracies[-1], "average": average_incremental(accuracies),
              "promoted": sum(r["decision"] == "promoted" for r in rows),
              "all_new_labels_served": all(not r["unserved_labels"] for r in rows),
              "wall_s": round(time.monotonic() - started_all, 1)}
    if out_of_scope is not None:
        result["out_of_scope"] = out_of_scope
    return result


def score_out_of_scope(plan: Plan, daemon: DaemonProcess) -> dict[str, Any]:
    """The served model on every in-scope test text and the out-of-scope test texts: how
    many of each it abstains on, and how well its top probability separates them."""
    from learners.calibration import auroc

    scored = seen_test(plan.dataset.test, plan.stages, len(plan.stages))
    inside, _ = daemon.answers([t for t, _ in scored])
    outside, _ = daemon.answers(plan.dataset.oos_test)
    answered = [(a, label) for a, (_, label) in zip(inside, scored, strict=True) if not a["abstained"]]

    def top(answer: dict[str, Any]) -> float:
        return max(answer["probabilities"].values())

    area = auroc([top(a) for a in inside], [top(a) for a in outside])
    return {"in_scope_texts": len(inside), "oos_texts": len(outside),
            "oos_trained_as": len(plan.dataset.oos_train),
            "oos_recall": sum(a["abstained"] for a in outside) / len(outside) if outside else None,
            "in_scope_abstained": sum(a["abstained"] for a in inside) / len(inside) if inside else None,
            "in_scope_answered_accuracy": (sum(a["label"] == label for a, label in answered) / len(answered)
                                           if answered else None),
            "auroc": area}


def measure_freshness(plan: Plan, bootstrap_servers: str, workdir: Path, say: Any) -> dict[str, Any]:
    """Seconds from a stage's last record produced to a served model with >= 80% (``--freshness-recall``)
    recall on its labels.

    A fresh daemon with the same settings plus ``schedule.volume_threshold``; no retrain is
    asked for: the volume trigger has to notice the data. The first stage times a first
    model; the second, new labels onto a served model (the figure that matters).
    """
    stages = plan.stages[:2]
    sizes = [len(_stage_records(plan, s)) for s in stages]
    threshold = plan.freshness_volume or max(1, int(0.8 * min(sizes)))
    env = {**plan.env, "LIFELONG_SCHEDULE__VOLUME_THRESHOLD": str(threshold)}
    rows = []
    with DaemonProcess(workdir / "freshness", bootstrap_servers=bootstrap_servers, topic="bench.freshness",
                       config=plan.config, env=env) as daemon:
        for stage in stages:
            daemon.produce(_stage_records(plan, stage))
            produced = time.monotonic()
            scored = seen_test(plan.dataset.test, plan.stages, stage.number)
            scored = [p for p in scored if p[1] in set(stage.labels)]
            tried: set[str] = set()
            deadline = produced + plan.stage_timeout_s
            recall, version = 0.0, None
            while time.monotonic() < deadline:
                version = daemon.api("GET", "/v1/status")["serving"]
                if version is not None and version not in tried:
                    tried.add(version)
                    answered = time.monotonic()
                    predicted, _ = daemon.predict([t for t, _ in scored])
                    recall = sum(p == lab for p, (_, lab) in zip(predicted, scored, strict=True)) / len(scored)
                    if recall >= plan.freshness_recall:
                        seconds = answered - produced
                        break
                time.sleep(0.25)
            else:
                seconds = None
            rows.append({"stage": stage.number, "labels": stage.labels, "volume_threshold": threshold,
                         "seconds": None if seconds is None else round(seconds, 1), "served": version,
                         "recall": recall, "recall_needed": plan.freshness_recall})
            say(f"freshness, stage {stage.number}: "
                + (f"served with recall {recall:.2f} {seconds:.0f} s after its last record" if seconds is not None
                   else f"not recognised within {plan.stage_timeout_s:.0f}s (recall {recall:.2f})"))
    headline = rows[-1]["seconds"]
    return {"stages": rows, "seconds": headline, "target_s": 180.0,
            "met": headline is not None and headline <= 180.0}


def run_baselines(plan: Plan, say: Any, done: Any = None) -> dict[str, Any]:
    """naive and replay fine-tuning stage by stage, and joint training, on the daemon's model and budget.

    ``done(results)`` is called after each baseline, so a long run leaves a report of
    what it finished even if it is stopped during the next one.
    """
    from benchmarks.continual_learner import joint_training, learner_stream
    from daemon.config import load_settings

    settings = load_settings(plan.config, **_overrides(plan.env))
    training = settings.training
    base = training.base_model
    results: dict[str, Any] = {}
    for name in plan.baselines:
        strategy = training.strategy.model_copy(update={"name": "naive" if name == "joint" else name})
        started = time.monotonic()
        if name == "joint":
            results[name] = joint_training(plan.dataset, plan.stages, strategy=strategy, base_model=base)
            say(f"baseline joint: accuracy {results[name]['accuracy']:.3f} on {results[name]['labels']} labels")
            if done:
                done(results)
            continue

        def show(row: dict[str, Any], name: str = name) -> None:
            say(f"baseline {name}, stage {row['stage']}/{len(plan.stages)}: accuracy {row['accuracy']:.3f}")

        rows = learner_stream(plan.dataset, plan.stages, strategy=strategy, buffer=training.buffer.to_config(),
                              base_model=base, progress=show)
        results[name] = {"stages": rows, "final": rows[-1]["accuracy"],
                         "average": average_incremental([r["accuracy"] for r in rows]),
                         "wall_s": round(time.monotonic() - started, 1)}
        if done:
            done(results)
    return results


def _overrides(env: dict[str, str]) -> dict[str, Any]:
    """The benchmark's ``LIFELONG_*`` settings as nested keyword overrides for ``load_settings``."""
    nested: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("LIFELONG_"):
            continue
        parts = key.removeprefix("LIFELONG_").lower().split("__")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lifelong bench continual", description=__doc__.splitlines()[0])
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, default=None, help=f"CLINC150's data_full.json (default {CLINC150})")
    data.add_argument("--train", type=Path, default=None, help="training CSV/JSONL with text,label")
    data.add_argument("--test", type=Path, default=None, help="test CSV/JSONL with text,label")
    data.add_argument("--tasks", type=int, default=15)
    data.add_argument("--classes-per-task", type=int, default=10)
    data.add_argument("--seed", type=int, default=0, help="seeds the label order of the stages")
    data.add_argument("--stage-file", type=Path, default=None, help="JSON list of stages, each a list of labels")
    daemon = parser.add_argument_group("daemon (defaults are the product's)")
    daemon.add_argument("--config", type=Path, default=None, help="a lifelong YAML file for the daemon")
    daemon.add_argument("--strategy", default=None, help="training.strategy.name")
    daemon.add_argument("--buffer-fraction", type=float, default=None,
                        help="training.buffer.fraction, with min_size 0 so the budget is exactly this fraction")
    daemon.add_argument("--base-model", type=Path, default=None, help="training.base_model")
    run = parser.add_argument_group("run")
    run.add_argument("--baselines", default=",".join(BASELINES),
                     help=f"comma-separated subset of {','.join(BASELINES)}, or 'none'")
    run.add_argument("--oos", action="store_true",
                     help="stream the dataset's out-of-scope training texts as label 'oos' (evaluation.oos_label) "
                          "and score abstention on its out-of-scope test texts (CLINC150's oos_train/oos_test)")
    run.add_argument("--no-freshness", action="store_true", help="skip the freshness measurement")
    run.add_argument("--freshness-volume", type=int, default=None,
                     help="schedule.volume_threshold of the freshness daemon (default 80%% of a stage)")
    run.add_argument("--freshness-recall", type=float, default=0.8,
                     help="recall on a stage's labels that counts as recognised (default 0.8)")
    run.add_argument("--stage-timeout-s", type=float, default=1800.0)
    run.add_argument("--out", type=Path, default=Path("bench-continual"), help="report directory")
    return parser


def _plan(args: argparse.Namespace) -> Plan:
    dataset = load_dataset(args.data, train=args.train, test=args.test)
    stages = plan_stages(dataset, tasks=args.tasks, classes_per_task=args.classes_per_task, seed=args.seed,
                         stage_file=args.stage_file)
    env: dict[str, str] = {}
    if args.strategy:
        env["LIFELONG_TRAINING__STRATEGY__NAME"] = args.strategy
    if args.buffer_fraction is not None:
        env["LIFELONG_TRAINING__BUFFER__FRACTION"] = str(args.buffer_fraction)
        env["LIFELONG_TRAINING__BUFFER__MIN_SIZE"] = "0"
    if args.base_model is not None:
        if not args.base_model.is_dir():
            raise DatasetError(f"base model {args.base_model} is not a directory")
        env["LIFELONG_TRAINING__BASE_MODEL"] = str(args.base_model.resolve())
    if not 0.0 < args.freshness_recall <= 1.0:
        raise DatasetError(f"--freshness-recall must be in (0, 1], got {args.freshness_recall}")
    if args.config is not None and not args.config.is_file():
        raise DatasetError(f"config file {args.config} not found")
    if args.oos:
        if not dataset.oos_test:
            raise DatasetError("--oos needs out-of-scope texts: CLINC150's data_full.json has oos_train/oos_test")
        env["LIFELONG_EVALUATION__OOS_LABEL"] = OOS_LABEL
    baselines = () if args.baselines == "none" else tuple(b for b in args.baselines.split(",") if b)
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise DatasetError(f"unknown baseline(s) {unknown}; choose from {','.join(BASELINES)} or 'none'")
    return Plan(dataset=dataset, stages=stages, config=args.config, env=env, baselines=baselines,
                freshness=not args.no_freshness, freshness_volume=args.freshness_volume,
                freshness_recall=args.freshness_recall,
                stage_timeout_s=args.stage_timeout_s, seed=args.seed, oos=args.oos)


def _check_settings(plan: Plan) -> dict[str, Any]:
    """Validate the daemon's settings here first: a bad key is one line before anything starts."""
    from daemon.config import ConfigError, load_settings

    try:
        settings = load_settings(plan.config, **_overrides(plan.env))
    except ConfigError as exc:
        raise DatasetError(str(exc)) from exc
    training = settings.training
    return {"strategy": training.strategy.name, "buffer": training.buffer.model_dump(mode="json"),
            "base_model": str(training.base_model) if training.base_model else "all-MiniLM-L6-v2 (bundled)"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        plan = _plan(args)
        described = _check_settings(plan)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    from daemon.ingest.broker import BrokerError, EmbeddedBroker
    from daemon.ingest.produce import ProduceError

    args.out.mkdir(parents=True, exist_ok=True)
    # SIGTERM (a CI timeout, `kill`) must unwind like Ctrl-C, so the broker and the daemon
    # below are stopped by their context managers instead of outliving this process.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    report: dict[str, Any] = {
        "config": {
            **described, "dataset": str(args.data or (f"{args.train} / {args.test}" if args.train else CLINC150)),
            "tasks": len(plan.stages), "labels": sum(len(s.labels) for s in plan.stages), "seed": args.seed,
            "stages": [s.labels for s in plan.stages], "baselines": list(plan.baselines),
            "command": "lifelong bench continual " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        },
    }
    say(f"{len(plan.stages)} stages, {report['config']['labels']} labels, strategy {described['strategy']}; "
        f"report in {args.out}")
    try:
        with tempfile.TemporaryDirectory(prefix="lifelong-bench-continual-") as scratch, \
                EmbeddedBroker(log_path=Path(scratch) / "broker.log") as broker:
            workdir = Path(scratch)
            try:
                report["daemon"] = run_daemon_stream(plan, broker.bootstrap_servers, workdir, say)
                if plan.freshness:
                    report["freshness"] = measure_freshness(plan, broker.bootstrap_servers, workdir, say)
            finally:
                _keep_logs(workdir, args.out)
        write_report(report, args.out)  # the daemon's figures are safe before the long baselines start

        def partial(results: dict[str, Any]) -> None:
            write_report({**report, "baselines": dict(results)}, args.out)

        report["baselines"] = run_baselines(plan, say, partial)
    except (DaemonFailed, BrokerError, ProduceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; the broker and the daemon were stopped", file=sys.stderr)
        return 130
    report["wall_s"] = round(time.monotonic() - started, 1)
    paths = write_report(report, args.out)
    daemon = report["daemon"]
    say(f"{described['strategy']} through the daemon: final {daemon['final']:.4f}, average incremental "
        f"{daemon['average']:.4f}, {daemon['promoted']}/{len(plan.stages)} promoted; wrote "
        + ", ".join(str(p) for p in paths))
    return 0


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _keep_logs(workdir: Path, out: Path) -> None:
    for name in ("daemon", "freshness"):
        log = workdir / name / "daemon.log"
        if log.is_file():
            (out / f"{name}.log").write_bytes(log.read_bytes())


if __name__ == "__main__":
    sys.exit(main())
