"""Training throughput benchmark: a ``learners`` candidate run versus a plain PyTorch loop.

Why this exists: every retrain goes through Avalanche (``SupervisedTemplate``, its
plugins, its datasets and data loaders) inside :func:`learners.train.train_candidate`.
That machinery buys continual-learning strategies, but it must not cost much raw
speed: the project's target is that a candidate run trains at no less than 0.9 of the
examples/s of a hand-written PyTorch loop on the same model, data and batch size. A
refactor of ``learners`` (a per-step callback, an extra evaluation pass, a slower data
path) can lose that silently, so this script measures both side by side in one
process, the same way every time.

Both sides train the same model class (:func:`learners.model.load_base` on the same
encoder, a head with the same labels), with AdamW at the same learning rate and weight
decay, on the same CLINC150 utterances tokenized the same way
(:func:`learners.data.encode_texts`), padded per batch the same way
(:func:`learners.data.pack_batch`), in shuffled batches of ``--batch-size``, with
cross-entropy. The plain loop's clock covers only its epochs (model loading and
tokenization are outside it). The ``learners`` side is reported three ways:

``learners``
    ``TrainingResult.examples_per_second``: learners' own figure, timed around
    ``strategy.train`` (the epochs plus Avalanche's per-experience setup: dataset
    adaptation, data loader and optimizer set-up, plugin hooks). This is the headline.
``learners, loop only``
    The progress plugin's figure at the end of the last epoch, timed from Avalanche's
    ``before_training_exp`` hook: the epochs alone, the closest match to the plain
    loop's clock.
``learners, end to end``
    Examples over the wall time of the whole ``train_candidate`` call: adds loading the
    base model, tokenizing, building the strategy and writing the candidate directory.
    For context only; the plain loop has no counterpart.

``--repeats`` pairs run after a few untimed warm-up steps, alternately (plain first in
odd pairs, learners first in even ones, so drift cancels out); medians are reported and
the ratio is median(learners) / median(plain).

The machine must be quiet. With ``--threads`` equal to the core count, a neighbour
keeping one core busy does not cost a fair share but an order of magnitude (on the
2-core development machine MiniLM fell from ~75 to 4-6 examples/s in both loops,
since each step waits for the descheduled OpenMP thread), and whichever side it hits
loses. So every run records how many cores other processes kept busy meanwhile
(``/proc/stat`` minus this process's CPU time); a pair above ``--max-other-load`` is
run again, up to ``--retries`` extra pairs, and left out of the medians unless no pair
was quiet, in which case the report says so. On a quiet machine the remaining noise
is a couple of percent per pair: each run shuffles its own batches, so the padded
length a run computes on varies (about 0.9% standard deviation for the default data).

For the replay strategies (and ``agem``) the run gets ``--replay-examples`` replay
examples from other intents. With replay the plain loop mirrors Avalanche's replay
loader: each step is ``--batch-size`` new examples plus ``--replay-batch-size``
examples drawn from a reshuffled, cycled memory, padded together. The other components
(``ewc``, ``lwf``, ``si``, ``agem``) have no plain counterpart; against the plain loop
(naive, or replay for ``replay+ewc``/``replay+lwf``) their ratio is the cost of the
strategy itself.

Run from the repository root::

    python -m benchmarks.train_throughput                       # defaults: naive, 1000 examples
    python -m benchmarks.train_throughput --strategy replay
    python -m benchmarks.train_throughput --examples 200 --repeats 1   # quick look
    python -m benchmarks.train_throughput --profile /tmp/train          # + cProfile of one pair

``--profile PREFIX`` runs one more, unmeasured pair under cProfile after the measured
ones and writes ``PREFIX.plain.pstats`` and ``PREFIX.learners.pstats``. ``--check``
exits with status 1 when the ratio misses the target and 2 when no pair ran on a
quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import logging
import os
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from learners import (
    STRATEGY_COMPONENTS,
    BufferConfig,
    Example,
    Progress,
    StrategyConfig,
    TrainingSpec,
    default_base_model,
    encode_texts,
    load_base,
    pack_batch,
    pick_device,
    train_candidate,
)

logger = logging.getLogger("benchmarks.train_throughput")

RATIO_TARGET = 0.9
#: Default for --max-other-load: above this many cores busy with other processes, a pair is
#: rerun and left out of the medians.
BUSY_CORES = 0.1
#: CLINC150 beside the repository (``../shared/datasets``, relative to the repository root the
#: benchmarks run from), where this project's machines keep it.
DEFAULT_DATASET = Path("..") / "shared" / "datasets" / "clinc150" / "data_full.json"
#: Components that read the replay memory the caller hands in. Only ``replay`` puts
#: memory examples into the minibatches (AGEM computes reference gradients on its own).
_MEMORY_COMPONENTS = ("replay", "agem")


# ---------------------------------------------------------------------------- data


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    """(text, intent) pairs from CLINC150's ``data_full.json`` (its ``train`` split) or a
    JSONL file of lifelong records (``{"text": ..., "label": ...}``, like the bundled sample)."""
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(r["text"], r["label"]) for r in records]
    data = json.loads(path.read_text(encoding="utf-8"))
    if "train" not in data:
        raise ValueError(f"{path} has no 'train' split")
    return [(text, intent) for text, intent in data["train"]]


def load_clinc(path: Path, *, intents: int, examples: int, replay_examples: int,
               seed: int) -> tuple[list[Example], list[Example]]:
    """``examples`` training utterances from the first ``intents`` intents (sorted by name),
    spread evenly over them, and ``replay_examples`` utterances from the intents after those.

    The choice is deterministic for a given ``seed``, so every run trains on the same data.

    Raises
    ------
    ValueError
        The file lacks a ``train`` split, or holds too few intents or utterances.
    """
    by_intent: dict[str, list[str]] = {}
    for text, intent in _read_pairs(path):
        by_intent.setdefault(intent, []).append(text)
    names = sorted(by_intent)
    replay_intents = intents if replay_examples else 0
    if len(names) < intents + replay_intents:
        raise ValueError(f"{path} has {len(names)} intents; {intents + replay_intents} needed")
    rng = random.Random(seed)
    for texts in by_intent.values():
        rng.shuffle(texts)

    def take(group: Sequence[str], count: int, first_id: int) -> list[Example]:
        picked: list[tuple[str, str]] = []
        position = 0
        while len(picked) < count:
            before = len(picked)
            for name in group:
                if position < len(by_intent[name]) and len(picked) < count:
                    picked.append((by_intent[name][position], name))
            if len(picked) == before:
                raise ValueError(f"only {len(picked)} utterances in intents {list(group)[:3]}...; {count} asked")
            position += 1
        rng.shuffle(picked)
        return [Example(first_id + i, text, label) for i, (text, label) in enumerate(picked)]

    train = take(names[:intents], examples, 1_000_000)
    replay = take(names[intents: intents + replay_intents], replay_examples, 1) if replay_examples else []
    return train, replay


@dataclass(frozen=True)
class Encoded:
    """Pre-tokenized training data for the plain loop, in the label order learners uses."""

    labels: list[str]
    ids: list[list[int]]
    targets: list[int]
    memory_ids: list[list[int]]
    memory_targets: list[int]
    pad_id: int


def run_labels(train: Sequence[Example], replay: Sequence[Example]) -> list[str]:
    """The head's labels as ``train_candidate`` grows them on a fresh base model: sorted."""
    return sorted({ex.label for ex in train} | {ex.label for ex in replay})


def encode(tokenizer: Any, train: Sequence[Example], replay: Sequence[Example], max_length: int) -> Encoded:
    labels = run_labels(train, replay)
    index = {label: i for i, label in enumerate(labels)}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(
        labels=labels,
        ids=encode_texts(tokenizer, [ex.text for ex in train], max_length),
        targets=[index[ex.label] for ex in train],
        memory_ids=encode_texts(tokenizer, [ex.text for ex in replay], max_length) if replay else [],
        memory_targets=[index[ex.label] for ex in replay],
        pad_id=pad_id,
    )


# ---------------------------------------------------------------------------- runs


@dataclass
class PlainFigures:
    examples: int
    steps: int
    seconds: float
    examples_per_second: float
    #: Mean padded length per batch row: what a step actually computes on.
    mean_padded_length: float
    final_loss: float
    #: Cores other processes kept busy during the loop (``None``: unknown).
    other_load: float | None = None


@dataclass
class LearnersFigures:
    examples: int
    #: ``TrainingResult.examples_per_second``: around ``strategy.train``.
    examples_per_second: float
    train_seconds: float
    #: Progress plugin at the end of the last epoch: from ``before_training_exp`` to there.
    loop_examples_per_second: float
    loop_seconds: float
    #: Whole ``train_candidate`` call (load, tokenize, build, train, save).
    wall_seconds: float
    wall_examples_per_second: float
    final_loss: float | None
    #: Cores other processes kept busy during the whole call (``None``: unknown).
    other_load: float | None = None


class OtherLoad:
    """Average CPU cores other processes kept busy while a block ran (Linux ``/proc/stat``).

    Both sides share the machine with whatever else runs on it; on a small machine a
    neighbour's job moves the figures more than anything measured here, so every run
    records how busy the rest of the machine was and the report flags busy runs.
    """

    def __enter__(self) -> OtherLoad:
        self.cores: float | None = None
        self._busy, self._own, self._wall = _system_busy_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own, wall = _system_busy_seconds(), time.process_time(), time.perf_counter()
        if busy is not None and self._busy is not None and wall > self._wall:
            self.cores = max(0.0, (busy - self._busy) - (own - self._own)) / (wall - self._wall)


def _system_busy_seconds() -> float | None:
    """Non-idle CPU seconds of the whole machine since boot, or ``None`` off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _memory_batches(count: int, batch: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless shuffled batches of memory indices, reshuffled at each pass (Avalanche oversamples
    the memory the same way when it is smaller than the new data)."""
    while True:
        order = torch.randperm(count, generator=generator).tolist()
        for start in range(0, count, batch):
            yield order[start: start + batch]


def _plain_batches(data: Encoded, config: StrategyConfig, generator: torch.Generator, *,
                   use_memory: bool) -> Iterator[tuple[list[list[int]], list[int]]]:
    """``config.epochs`` passes of shuffled batches, each with its replayed examples appended
    when ``use_memory`` (as Avalanche's ``ReplayDataLoader`` concatenates them before collation)."""
    memory = (_memory_batches(len(data.memory_ids), config.replay_batch_size, generator)
              if use_memory and data.memory_ids else None)
    for _epoch in range(config.epochs):
        order = torch.randperm(len(data.ids), generator=generator).tolist()
        for start in range(0, len(order), config.batch_size):
            rows = order[start: start + config.batch_size]
            sequences = [data.ids[i] for i in rows]
            targets = [data.targets[i] for i in rows]
            if memory is not None:
                extra = next(memory)
                sequences += [data.memory_ids[i] for i in extra]
                targets += [data.memory_targets[i] for i in extra]
            yield sequences, targets


def plain_run(model_path: Path, data: Encoded, config: StrategyConfig, device: torch.device,
              *, use_memory: bool, max_steps: int | None = None) -> PlainFigures:
    """Train a fresh classifier with a hand-written loop; only the epochs are timed."""
    _seed_everything(config.seed)
    loaded = load_base(model_path, labels=data.labels, max_length=config.max_length)
    model = loaded.model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    criterion = nn.CrossEntropyLoss()
    batches = _plain_batches(data, config, torch.Generator().manual_seed(config.seed), use_memory=use_memory)
    examples = steps = padded = 0
    loss_sum = torch.zeros((), device=device)

    with OtherLoad() as load:
        started = time.perf_counter()
        for sequences, targets in batches:
            packed = pack_batch(sequences, data.pad_id).to(device)
            labels = torch.as_tensor(targets, dtype=torch.long).to(device)
            optimizer.zero_grad(set_to_none=True)
            # learners runs the forward pass under bfloat16 autocast on CUDA; so does this loop.
            with (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                  else contextlib.nullcontext()):
                logits = model(packed)
            loss = criterion(logits, labels)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            examples += len(targets)
            padded += packed.shape[2] * len(targets)
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started

    final_loss = float(loss_sum) / max(steps, 1)
    del model, loaded, optimizer
    gc.collect()
    return PlainFigures(examples, steps, seconds, examples / seconds if seconds > 0 else 0.0,
                        padded / max(examples, 1), final_loss, load.cores)


def learners_run(model_path: Path, train: Sequence[Example], replay: Sequence[Example], config: StrategyConfig,
                 device: torch.device, buffer_size: int) -> LearnersFigures:
    """One ``train_candidate`` run from the base model into a temporary directory."""
    reports: list[Progress] = []
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        spec = TrainingSpec(
            output_dir=Path(tmp) / "candidate", train=list(train), strategy=config,
            buffer=BufferConfig(size=buffer_size), replay=list(replay), base_model=model_path,
            device=str(device),
        )
        with OtherLoad() as load:
            started = time.perf_counter()
            result = train_candidate(spec, progress=reports.append)
            wall = time.perf_counter() - started
    if result.status != "trained" or not reports:
        raise RuntimeError(f"learners run did not train: {result.status} ({result.reason})")
    last = reports[-1]
    examples = result.examples_trained
    train_seconds = examples / result.examples_per_second if result.examples_per_second > 0 else float("nan")
    loop_seconds = last.examples / last.examples_per_second if last.examples_per_second > 0 else float("nan")
    gc.collect()
    return LearnersFigures(
        examples=examples,
        examples_per_second=result.examples_per_second,
        train_seconds=train_seconds,
        loop_examples_per_second=last.examples_per_second,
        loop_seconds=loop_seconds,
        wall_seconds=wall,
        wall_examples_per_second=examples / wall,
        final_loss=result.final_loss,
        other_load=load.cores,
    )


# ---------------------------------------------------------------------------- driver


def _profile(path_prefix: Path, name: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``func`` under cProfile, write ``<prefix>.<name>.pstats`` and log the top entries."""
    profiler = cProfile.Profile()
    result = profiler.runcall(func, *args, **kwargs)
    out = path_prefix.with_name(f"{path_prefix.name}.{name}.pstats")
    profiler.dump_stats(str(out))
    stream = _LogStream()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(25)  # type: ignore[arg-type]
    logger.info("cProfile of the %s run written to %s; top by own time:\n%s", name, out, stream.text())
    return result


class _LogStream:
    """A write-only text sink for :mod:`pstats`, so its table goes through logging."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def text(self) -> str:
        return "".join(self.parts)


def _cores(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    model_path = Path(args.model) if args.model else default_base_model()
    config = StrategyConfig(
        name=args.strategy, learning_rate=args.learning_rate, epochs=args.epochs, batch_size=args.batch_size,
        replay_batch_size=args.replay_batch_size, max_length=args.max_length, seed=args.seed,
    )
    needs_memory = any(component in _MEMORY_COMPONENTS for component in config.components)
    use_memory = "replay" in config.components  # the plain loop appends memory examples to its batches
    train, replay = load_clinc(args.dataset, intents=args.intents, examples=args.examples,
                               replay_examples=args.replay_examples if needs_memory else 0, seed=args.seed)
    logger.info("data: %d training utterances over %d intents, %d replay utterances; model %s; "
                "strategy %s; batch %d; %d epoch(s); max_length %d; %d torch threads; device %s",
                len(train), args.intents, len(replay), model_path, config.name, config.batch_size,
                config.epochs, config.max_length, torch.get_num_threads(), device)

    tokenizer = load_base(model_path, max_length=config.max_length).tokenizer
    data = encode(tokenizer, train, replay, config.max_length)

    if args.warmup_steps > 0:
        warm = plain_run(model_path, data, config, device, use_memory=use_memory, max_steps=args.warmup_steps)
        logger.info("warm-up: %d plain steps at %.1f examples/s (not counted)", warm.steps, warm.examples_per_second)

    def run_pair(number: int) -> dict[str, Any]:
        order = ("plain", "learners") if number % 2 == 1 else ("learners", "plain")
        pair: dict[str, Any] = {"pair": number}
        for side in order:
            if side == "plain":
                figures: Any = plain_run(model_path, data, config, device, use_memory=use_memory)
                logger.info("pair %d plain: %d examples in %.1fs = %.1f examples/s (mean padded length %.1f; "
                            "other processes busy on %s cores)", number, figures.examples, figures.seconds,
                            figures.examples_per_second, figures.mean_padded_length, _cores(figures.other_load))
            else:
                figures = learners_run(model_path, train, replay, config, device, args.buffer_size)
                logger.info("pair %d learners: %d examples, %.1f examples/s around strategy.train (%.1fs), "
                            "%.1f in the loop (%.1fs), %.1f end to end (%.1fs; other processes busy on %s cores)",
                            number, figures.examples, figures.examples_per_second, figures.train_seconds,
                            figures.loop_examples_per_second, figures.loop_seconds, figures.wall_examples_per_second,
                            figures.wall_seconds, _cores(figures.other_load))
            pair[side] = asdict(figures)
        pair["ratio"] = pair["learners"]["examples_per_second"] / pair["plain"]["examples_per_second"]
        loads = [pair[side]["other_load"] for side in order if pair[side]["other_load"] is not None]
        pair["other_load"] = max(loads) if loads else None
        pair["quiet"] = pair["other_load"] is None or pair["other_load"] <= args.max_other_load
        if pair["learners"]["examples"] != pair["plain"]["examples"]:
            logger.warning("pair %d: learners trained %d examples, the plain loop %d: not like for like",
                           number, pair["learners"]["examples"], pair["plain"]["examples"])
        return pair

    # A pair during which other processes were busy is run again, up to --retries extra
    # pairs; the medians then come from the quiet pairs alone (all pairs if none was quiet).
    pairs: list[dict[str, Any]] = []
    while (sum(p["quiet"] for p in pairs) < args.repeats
           and len(pairs) < args.repeats + args.retries):
        pairs.append(run_pair(len(pairs) + 1))
        if not pairs[-1]["quiet"]:
            logger.warning("pair %d: other processes kept %.2f cores busy (above --max-other-load %.2f)",
                           len(pairs), pairs[-1]["other_load"], args.max_other_load)
    quiet = any(p["quiet"] for p in pairs)
    counted = [p for p in pairs if p["quiet"]] if quiet else pairs

    def median(side: str, key: str) -> float:
        return statistics.median(pair[side][key] for pair in counted)

    plain_eps = median("plain", "examples_per_second")
    learners_eps = median("learners", "examples_per_second")
    summary = {
        "plain_examples_per_second": plain_eps,
        "learners_examples_per_second": learners_eps,
        "learners_loop_examples_per_second": median("learners", "loop_examples_per_second"),
        "learners_end_to_end_examples_per_second": median("learners", "wall_examples_per_second"),
        "ratio": learners_eps / plain_eps,
        "ratio_loop_only": median("learners", "loop_examples_per_second") / plain_eps,
        "pairs_counted": [p["pair"] for p in counted],
        "pair_ratios": {p["pair"]: p["ratio"] for p in pairs},
        "quiet": quiet,
        "target": RATIO_TARGET,
        "met": learners_eps / plain_eps >= RATIO_TARGET,
    }
    if not quiet:
        logger.warning("no pair ran on a quiet machine: the figures measure the neighbours as much as the code; "
                       "rerun when nothing else runs")

    if args.profile is not None:
        args.profile.parent.mkdir(parents=True, exist_ok=True)
        _profile(args.profile, "plain", plain_run, model_path, data, config, device, use_memory=use_memory)
        _profile(args.profile, "learners", learners_run, model_path, train, replay, config, device, args.buffer_size)

    return {
        "config": {
            "strategy": config.name,
            "examples": len(train),
            "intents": args.intents,
            "replay_examples": len(replay),
            "batch_size": config.batch_size,
            "replay_batch_size": config.replay_batch_size if use_memory else None,
            "epochs": config.epochs,
            "max_length": config.max_length,
            "learning_rate": config.learning_rate,
            "weight_decay": config.weight_decay,
            "model": str(model_path),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "retries": args.retries,
            "max_other_load": args.max_other_load,
            "warmup_steps": args.warmup_steps,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "pairs": pairs,
        "summary": summary,
    }


def print_figures(figures: dict[str, Any]) -> None:
    summary, config = figures["summary"], figures["config"]
    repeats = len(summary["pairs_counted"])
    verdict = "OK" if summary["met"] else "BELOW TARGET"
    rows = [
        ("plain PyTorch loop", f"{summary['plain_examples_per_second']:.1f} examples/s",
         f"median of {repeats}; the epochs only"),
        (f"learners ({config['strategy']} via Avalanche)", f"{summary['learners_examples_per_second']:.1f} examples/s",
         f"median of {repeats}; TrainingResult.examples_per_second, around strategy.train"),
        ("ratio", f"{summary['ratio']:.3f}", f"target >= {RATIO_TARGET}: {verdict}"),
        ("  learners, training loop only", f"{summary['learners_loop_examples_per_second']:.1f} examples/s",
         f"ratio {summary['ratio_loop_only']:.3f}; progress plugin, before_training_exp to last epoch end"),
        ("  learners, end to end", f"{summary['learners_end_to_end_examples_per_second']:.1f} examples/s",
         "whole train_candidate: load, tokenize, train, save"),
        ("  per-pair ratios", ", ".join(f"{n}: {r:.3f}" + ("" if n in summary["pairs_counted"] else " (busy, left out)")
                                        for n, r in summary["pair_ratios"].items()), ""),
    ]
    if not summary["quiet"]:
        rows.append(("  WARNING", "machine busy", "other processes were busy during every pair: figures unreliable"))
    width = max(len(label) for label, _, _ in rows) + 1
    for label, value, note in rows:
        print(f"{label + ':':<{width}} {value:<18}" + (f"  ({note})" if note else ""))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = StrategyConfig()
    parser.add_argument("--examples", type=int, default=1000, help="training utterances (default: %(default)s)")
    parser.add_argument("--intents", type=int, default=20, help="intents they are spread over (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="new examples per step (default: %(default)s)")
    parser.add_argument("--replay-batch-size", type=int, default=defaults.replay_batch_size,
                        help="replayed examples per step, replay strategies only (default: %(default)s)")
    parser.add_argument("--replay-examples", type=int, default=450,
                        help="replay memory size, replay/agem strategies only (default: %(default)s)")
    parser.add_argument("--buffer-size", type=int, default=450,
                        help="BufferConfig(size=...) of the learners run (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="(default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=48, help="tokens per utterance (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="(default: %(default)s)")
    parser.add_argument("--model", help="encoder directory (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--strategy", default="naive", choices=list(STRATEGY_COMPONENTS),
                        help="learners strategy; naive is the like-for-like comparison (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="plain/learners pairs; medians are reported "
                        "(default: %(default)s)")
    parser.add_argument("--retries", type=int, default=2,
                        help="extra pairs allowed to replace pairs run on a busy machine (default: %(default)s)")
    parser.add_argument("--max-other-load", type=float, default=BUSY_CORES,
                        help="a pair during which other processes kept more cores than this busy is rerun "
                             "(default: %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=3,
                        help="untimed plain steps before the first pair (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET,
                        help="CLINC150 data_full.json, or a JSONL file of {text, label} records such as "
                             "daemon/data/clinc150_sample.jsonl (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--profile", type=Path,
                        help="after the measured pairs, cProfile one more pair into PREFIX.plain.pstats "
                             "and PREFIX.learners.pstats")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when the target is missed, 2 when no pair ran on a quiet machine")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    for name in ("examples", "intents", "batch_size", "epochs", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.retries < 0 or args.warmup_steps < 0 or args.replay_examples < 0:
        parser.error("--retries, --warmup-steps and --replay-examples cannot be negative")
    if not args.dataset.is_file():
        parser.error(f"--dataset {args.dataset} does not exist: pass CLINC150's data_full.json "
                     "(https://github.com/clinc/oos-eval) or a JSONL file of {text, label} records")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    figures = run_benchmark(args)
    print_figures(figures)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if args.check and not figures["summary"]["quiet"]:
        return 2
    return 1 if args.check and not figures["summary"]["met"] else 0


if __name__ == "__main__":
    sys.exit(main())
