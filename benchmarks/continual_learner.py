"""Class-incremental stages through ``learners.train.train_candidate``, with no daemon around it.

Why this exists: a strategy's accuracy must be reproducible with one command and
cheaply, without Kafka, a database or the gate in the way. This script streams a
labelled dataset in stages of new labels through the same training function the
daemon's worker runs — each stage a new version continuing from the previous one,
with the replay buffer the daemon would hand it — and scores every stage on the test
texts of all labels seen so far. ``lifelong bench continual`` (``benchmarks/continual.py``)
runs the real daemon and uses :func:`learner_stream` and :func:`joint_training` from
here for its baselines.

Run from the repository root::

    python -m benchmarks.continual_learner                          # slda, 15 x 10, seed 0
    python -m benchmarks.continual_learner --strategy replay+lwf --seeds 0 1 2
    python -m benchmarks.continual_learner --strategy replay --adapter lora --tasks 3 --classes-per-task 5

Each stage row reports accuracy, training examples/s and the artifact's size on disk,
so full fine-tuning and ``--adapter lora`` compare on all three.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.datasets import CLINC150, Dataset, DatasetError, Stage, load_dataset, plan_stages
from benchmarks.scoring import average_incremental, forgetting, score_stage, seen_test
from learners.buffer import BufferConfig
from learners.config import AdapterConfig, StrategyConfig
from learners.data import Example
from learners.inference import predict
from learners.model import load_classifier
from learners.train import TrainingSpec, train_candidate

__all__ = ["joint_training", "learner_stream", "main"]


def _predict_labels(model_dir: Path, texts: list[str]) -> list[str]:
    return list(predict(load_classifier(model_dir), texts).predicted_labels)


def learner_stream(dataset: Dataset, stages: list[Stage], *, strategy: StrategyConfig, buffer: BufferConfig,
                   base_model: Path | None = None,
                   progress: Callable[[dict[str, Any]], None] | None = None,
                   adapter: AdapterConfig | None = None) -> list[dict[str, Any]]:
    """Train stage after stage, each from the previous stage's model, and score each; one row per stage."""
    rows: list[dict[str, Any]] = []
    pool: dict[int, Example] = {}
    parent: Path | None = None
    members: list[int] = []
    with tempfile.TemporaryDirectory(prefix="lifelong-bench-") as root:
        for stage in stages:
            new = set(stage.labels)
            batch = [Example(len(pool) + i, text, label)
                     for i, (text, label) in enumerate(p for p in dataset.train if p[1] in new)]
            pool.update({e.sample_id: e for e in batch})
            replay = [pool[i] for i in sorted(members)]
            started = time.perf_counter()
            result = train_candidate(TrainingSpec(
                output_dir=Path(root) / f"v{stage.number:04d}", train=batch, replay=replay, strategy=strategy,
                buffer=buffer, parent_dir=parent, base_model=base_model, adapter=adapter or AdapterConfig()))
            seconds = time.perf_counter() - started
            if result.output_dir is None:
                raise RuntimeError(f"stage {stage.number} was not trained: {result.reason}")
            parent, members = Path(result.output_dir), list(result.buffer_members)
            scored = seen_test(dataset.test, stages, stage.number)
            score = score_stage(scored, _predict_labels(parent, [t for t, _ in scored]), stages, stage.number)
            rows.append({"stage": stage.number, "labels": sum(len(s.labels) for s in stages[:stage.number]),
                         "accuracy": score.accuracy, "groups": score.groups,
                         "new_labels_recall": score.new_labels_recall, "train_seconds": round(seconds, 2),
                         "replay": len(replay), "buffer_size": len(members),
                         "examples_per_second": round(result.examples_per_second, 2),
                         "artifact_bytes": result.artifact_bytes, "trainable_parameters": result.trainable_parameters})
            if progress:
                progress(rows[-1])
    for row, value in zip(rows, forgetting([r["groups"] for r in rows]), strict=True):
        row["forgetting"] = value
    return rows


def joint_training(dataset: Dataset, stages: list[Stage], *, strategy: StrategyConfig,
                   base_model: Path | None = None) -> dict[str, Any]:
    """The upper bound: one model trained from the base on the training data of every stage at once."""
    labels = {label for stage in stages for label in stage.labels}
    train = [Example(i, text, label) for i, (text, label) in enumerate(p for p in dataset.train if p[1] in labels)]
    with tempfile.TemporaryDirectory(prefix="lifelong-bench-joint-") as root:
        started = time.perf_counter()
        result = train_candidate(TrainingSpec(output_dir=Path(root) / "joint", train=train, strategy=strategy,
                                              buffer=BufferConfig(size=0), base_model=base_model))
        seconds = time.perf_counter() - started
        if result.output_dir is None:
            raise RuntimeError(f"joint training did not train: {result.reason}")
        scored = seen_test(dataset.test, stages, len(stages))
        score = score_stage(scored, _predict_labels(Path(result.output_dir), [t for t, _ in scored]), stages,
                            len(stages))
    return {"labels": len(labels), "accuracy": score.accuracy, "groups": score.groups,
            "train_seconds": round(seconds, 2), "examples": len(train)}


def _cap_per_label(dataset: Dataset, cap: int) -> Dataset:
    """``dataset`` with at most ``cap`` training texts of each label (the first ones)."""
    seen: dict[str, int] = {}
    train = []
    for text, label in dataset.train:
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= cap:
            train.append((text, label))
    return dataclasses.replace(dataset, train=train)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help=f"CLINC150 data_full.json (default {CLINC150})")
    parser.add_argument("--train", type=Path, default=None, help="training CSV/JSONL with text,label")
    parser.add_argument("--test", type=Path, default=None, help="test CSV/JSONL with text,label")
    parser.add_argument("--strategy", default="slda")
    parser.add_argument("--tasks", type=int, default=15)
    parser.add_argument("--classes-per-task", type=int, default=10)
    parser.add_argument("--stage-file", type=Path, default=None, help="JSON list of stages, each a list of labels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--buffer-fraction", type=float, default=0.03)
    parser.add_argument("--adapter", choices=("none", "lora"), default="none", help="training.adapter.name")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-learning-rate", type=float, default=5e-4)
    parser.add_argument("--epochs", type=int, default=None, help="strategy.epochs (default the product's)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="strategy.learning_rate (default the product's)")
    parser.add_argument("--max-train-per-label", type=int, default=None,
                        help="use at most this many training texts of each label (a quicker run)")
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        dataset = load_dataset(args.data, train=args.train, test=args.test)
        plans = {seed: plan_stages(dataset, tasks=args.tasks, classes_per_task=args.classes_per_task, seed=seed,
                                   stage_file=args.stage_file) for seed in args.seeds}
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    overrides = {k: v for k, v in (("epochs", args.epochs), ("learning_rate", args.learning_rate)) if v is not None}
    strategy = StrategyConfig(name=args.strategy, **overrides)
    adapter = AdapterConfig(name=args.adapter, r=args.lora_r, learning_rate=args.lora_learning_rate)
    if args.max_train_per_label is not None:
        dataset = _cap_per_label(dataset, args.max_train_per_label)
    buffer = BufferConfig(fraction=args.buffer_fraction)
    runs = []
    for seed, stages in plans.items():
        def show(row: dict[str, Any], seed: int = seed) -> None:
            print(f"seed {seed} stage {row['stage']:2d}: {row['labels']:3d} labels, accuracy {row['accuracy']:.4f}, "
                  f"train {row['train_seconds']:.1f} s ({row['examples_per_second']:.1f} examples/s), "
                  f"replay {row['replay']}, artifact {row['artifact_bytes'] / 1e6:.2f} MB, "
                  f"{row['trainable_parameters']} trainable parameters", flush=True)

        stages_run = learner_stream(dataset, stages, strategy=strategy, buffer=buffer, progress=show,
                                    adapter=adapter)
        runs.append({"strategy": args.strategy, "adapter": adapter.model_dump(), "seed": seed, "stages": stages_run,
                     "final": stages_run[-1]["accuracy"],
                     "average": average_incremental([s["accuracy"] for s in stages_run])})
    finals = [r["final"] for r in runs]
    averages = [r["average"] for r in runs]
    spread = statistics.pstdev(finals) if len(finals) > 1 else 0.0
    print(f"{args.strategy}: final accuracy {statistics.fmean(finals):.4f} (+/- {spread:.4f} over seeds "
          f"{args.seeds}), average incremental accuracy {statistics.fmean(averages):.4f}")
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
