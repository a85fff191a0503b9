"""One training run: from a parent version (or the base model) to a candidate directory.

:func:`train_candidate` is what the worker process runs. It takes plain data (a
:class:`TrainingSpec`), grows the head for labels the parent has not seen, trains one
Avalanche experience on the new examples with the replay memory the caller supplies,
then writes the candidate — weights, tokenizer, labels, learner state and replay
buffer membership — into ``spec.output_dir``. It never touches Kafka or a database.

A candidate directory holds, besides the classifier files of :mod:`learners.model`:

- ``learner_state.safetensors``: the strategy's tensors (EWC/SI importances, anchors);
- ``learner_state.json``: generation, strategy config, replay-buffer state, training
  figures.

With ``spec.adapter`` set to ``lora`` the encoder is frozen and LoRA adapters are
trained instead; the candidate then stores the adapter and the head rather than the
weights (see :mod:`learners.lora` for the design).
"""

from __future__ import annotations

import json
import logging
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from learners.buffer import BufferConfig, ReplayBuffer
from learners.config import AdapterConfig, StrategyConfig, check_adapter
from learners.data import Example, make_dataset
from learners.discriminant import DiscriminantStats, embed_texts
from learners.errors import ModelLoadError
from learners.handoff import LearnerState, Progress
from learners.model import (
    LoadedClassifier,
    default_base_model,
    load_base,
    load_classifier,
    pick_device,
    save_classifier,
)

__all__ = [
    "STATE_JSON",
    "STATE_TENSORS",
    "ParentState",
    "TrainingResult",
    "TrainingSpec",
    "load_parent_state",
    "train_candidate",
]

logger = logging.getLogger(__name__)

STATE_TENSORS = "learner_state.safetensors"
STATE_JSON = "learner_state.json"


@dataclass(frozen=True)
class TrainingSpec:
    """Everything one run needs, as plain picklable data.

    ``replay`` holds the examples of the parent's buffer members (the caller looks their
    texts up by the ids in the parent's buffer state); ``train`` the new examples.
    """

    output_dir: Path
    train: Sequence[Example]
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    buffer: BufferConfig = field(default_factory=lambda: BufferConfig(size=450))
    replay: Sequence[Example] = ()
    parent_dir: Path | None = None
    base_model: Path | None = None
    #: Labels with fewer training examples than this are trained on but flagged.
    min_samples_per_label: int = 5
    device: str | None = None
    #: torch intra-op threads for this run; ``None`` keeps torch's default (all cores).
    #: On a small machine shared with ingestion, fewer threads than cores avoids the
    #: collapse that oversubscribed intra-op threads suffer when another process is busy.
    torch_threads: int | None = None
    #: Sample ids deleted since the parent's buffer chose them; they leave the buffer
    #: before this run adds to it (``ReplayBuffer.forget``).
    forget_ids: Sequence[int] = ()
    #: ``lora``: train low-rank adapters instead of every encoder weight (not with slda).
    adapter: AdapterConfig = field(default_factory=AdapterConfig)

    def __post_init__(self) -> None:
        check_adapter(self.strategy, self.adapter)


@dataclass(frozen=True)
class TrainingResult:
    """What a run produced; JSON-friendly so it can cross a process boundary."""

    status: Literal["trained", "skipped"]
    output_dir: str | None
    labels: list[str]
    new_labels: list[str]
    flagged_labels: dict[str, int]
    buffer_state: dict[str, Any]
    buffer_members: list[int]
    generation: int
    examples_trained: int
    examples_per_second: float
    duration_seconds: float
    final_loss: float | None
    reason: str | None = None
    #: Bytes of every file written into the candidate directory.
    artifact_bytes: int = 0
    #: Parameters the run trained (with LoRA: the adapters and the head).
    trainable_parameters: int = 0
    #: ``adapter.json`` of a LoRA candidate (settings, base model path and fingerprint); else ``None``.
    adapter: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ParentState:
    """The learner state a version hands to its children."""

    state: LearnerState
    generation: int
    buffer_state: dict[str, Any] | None


def load_parent_state(directory: Path) -> ParentState:
    """Read ``learner_state.*`` from a version directory (empty state if it has none).

    Raises
    ------
    ModelLoadError
        The files exist but cannot be read.
    """
    json_path, tensor_path = directory / STATE_JSON, directory / STATE_TENSORS
    if not json_path.is_file():
        return ParentState(LearnerState(), 0, None)
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        tensors = load_file(str(tensor_path)) if tensor_path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read learner state in {directory}: {exc}") from exc
    return ParentState(LearnerState(tensors=tensors, meta=meta), int(meta.get("generation", 0)),
                       meta.get("buffer"))


#: Rows of features turned into statistics at a time (2048 random features x 4096 rows x 8 bytes = 64 MiB).
_FEATURE_CHUNK = 4096


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_start(spec: TrainingSpec) -> tuple[LoadedClassifier, ParentState]:
    lora = spec.adapter.enabled
    if spec.parent_dir is not None:
        # A LoRA parent keeps its adapter live when this run trains it further.
        loaded = load_classifier(spec.parent_dir, merge=not lora, base_model=spec.base_model)
        parent = load_parent_state(spec.parent_dir)
        if not lora and "slda" not in spec.strategy.components:
            loaded.adapter = None  # full fine-tuning changes the merged encoder: save it whole
        return loaded, parent
    loaded = load_base(spec.base_model, max_length=spec.strategy.max_length)
    return loaded, ParentState(LearnerState(), 0, None)


def _start_adapter(loaded: LoadedClassifier, spec: TrainingSpec) -> tuple[Path, str] | None:
    """Make ``loaded``'s encoder carry a trainable LoRA adapter; returns the base model it
    applies to (path, fingerprint), or ``None`` when the encoder is not a base model's
    (a fully fine-tuned parent: the result is then saved whole).

    Raises
    ------
    ModelLoadError
        The parent's adapter has another shape than ``spec.adapter`` asks for.
    """
    from learners import lora

    config = spec.adapter
    if loaded.adapter is not None:  # a LoRA parent, adapter live: continue it
        have = loaded.adapter.config
        if (have.r, have.alpha, have.target_modules) != (config.r, config.alpha, config.target_modules):
            raise ModelLoadError(
                f"the parent's LoRA adapter has r={have.r}, alpha={have.alpha}, "
                f"target_modules={list(have.target_modules)} but training.adapter asks for r={config.r}, "
                f"alpha={config.alpha}, target_modules={list(config.target_modules)}; an adapter's shape is fixed "
                "within a lineage: restore those settings, or set training.adapter to 'none' to fine-tune fully"
            )
        return loaded.adapter.base_model, loaded.adapter.base_sha256
    base = Path(spec.base_model) if spec.base_model is not None else default_base_model()
    if spec.parent_dir is not None:
        reference = load_base(base).model.backbone
        if not lora.same_encoder(loaded.model.backbone, reference):
            logger.warning("LoRA run on a fully fine-tuned parent: its encoder is not the base model's, so this "
                           "version is saved with all its weights (adapter-only artifacts need a lineage that "
                           "started from the base model or trained with slda)")
            lora.attach_lora(loaded.model, config)
            return None
    lora.attach_lora(loaded.model, config)
    return base, lora.base_fingerprint(base)
def _fit_discriminant(loaded: LoadedClassifier, parent: ParentState, spec: TrainingSpec,
                      index: dict[str, int]) -> LearnerState:
    """Strategy ``slda``: add the new examples' features to the parent's statistics and set
    the head in closed form; the encoder is not trained (see :mod:`learners.discriminant`).

    A parent without statistics (the base model, or a lineage that used another
    strategy) starts them from the replayed examples as well, so old labels keep rows.
    Head rows of labels with no statistics at all keep their weights. The random
    feature map (``slda_random_features``) is put in only on a lineage's first version
    from the base model: its rows would otherwise lose a trained head's weights, and a
    later version must read the features its parent's statistics were summed in.
    """
    model = loaded.model
    stats = DiscriminantStats.from_tensors(parent.state.tensors, labels=model.num_labels, hidden=model.feature_size)
    examples = list(spec.train)
    width = spec.strategy.slda_random_features
    if stats is None:
        if spec.parent_dir is None and width and model.projection is None:
            model.set_random_features(width, seed=spec.strategy.seed)
        stats = DiscriminantStats.empty(model.num_labels, model.feature_size)
        examples += list(spec.replay)
    if model.random_features != width:
        logger.info("slda keeps the lineage's feature map (%d random features; training.strategy."
                    "slda_random_features is %d and applies to lineages started from the base model, "
                    "which a rebuild does)", model.random_features, width)
    pooled = embed_texts(loaded, [e.text for e in examples], batch_size=spec.strategy.eval_batch_size)
    targets = [index[e.label] for e in examples]
    for start in range(0, len(examples), _FEATURE_CHUNK):  # wide features in bounded memory
        chunk = pooled[start : start + _FEATURE_CHUNK].to(model.head.weight.device)
        with torch.no_grad():
            stats.update(model.features(chunk).cpu(), targets[start : start + _FEATURE_CHUNK])
    weight, bias, fitted = stats.head(spec.strategy.slda_fixed_shrinkage)
    head = model.head
    with torch.no_grad():
        head.weight[fitted] = weight[fitted].to(dtype=head.weight.dtype, device=head.weight.device)
        head.bias[fitted] = bias[fitted].to(dtype=head.bias.dtype, device=head.bias.device)
    return LearnerState(tensors=stats.to_tensors(), meta={"generation": parent.generation + 1})


def train_candidate(
    spec: TrainingSpec,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train a candidate from ``spec.parent_dir`` (or the base model) and save it.

    Empty training data ends the run as ``skipped`` with nothing written.

    Raises
    ------
    ModelLoadError
        The parent or base model directory cannot be loaded.
    """
    started = time.perf_counter()
    config = spec.strategy
    loaded, parent = _load_start(spec)
    parent_labels = list(loaded.model.labels)
    counts = Counter(example.label for example in spec.train)
    flagged = {label: n for label, n in sorted(counts.items()) if n < spec.min_samples_per_label}
    if flagged:
        logger.warning("labels with fewer than %d training examples (trained on, flagged): %s",
                       spec.min_samples_per_label, flagged)
    buffer = (ReplayBuffer.from_state(parent.buffer_state, config=spec.buffer)
              if parent.buffer_state else ReplayBuffer(spec.buffer))
    if spec.forget_ids:
        dropped = buffer.forget(spec.forget_ids)
        logger.info("replay buffer: %d deleted samples removed", dropped)
    if not spec.train:
        return TrainingResult(
            status="skipped", output_dir=None, labels=parent_labels, new_labels=[], flagged_labels={},
            buffer_state=buffer.to_state(), buffer_members=[m[0] for m in buffer.members],
            generation=parent.generation, examples_trained=0, examples_per_second=0.0,
            duration_seconds=time.perf_counter() - started, final_loss=None, reason="no new training examples",
        )

    _seed_everything(config.seed + parent.generation)
    if spec.torch_threads is not None:
        torch.set_num_threads(spec.torch_threads)
    device = pick_device(spec.device)
    model = loaded.model
    base = _start_adapter(loaded, spec) if spec.adapter.enabled else None
    parent_model = None
    if "lwf" in config.components and parent_labels:
        from learners.lora import merged_copy

        parent_model = merged_copy(model)  # the teacher needs no adapter (none to train, none to pay for)
    # Sorted, so a label's head row does not depend on the order examples arrived in.
    new_labels = model.grow(sorted({ex.label for ex in spec.train} | {ex.label for ex in spec.replay}))
    model.to(device).train()
    loaded.max_length = config.max_length
    index = {label: i for i, label in enumerate(model.labels)}

    losses: list[float] = []
    examples_seen = [0]

    def _on_progress(report: Progress) -> None:
        losses.append(report.loss)
        examples_seen[0] = report.examples
        if progress is not None:
            progress(report)

    if "slda" in config.components:
        train_started = time.perf_counter()
        state = _fit_discriminant(loaded, parent, spec, index)
        train_seconds = time.perf_counter() - train_started
        examples_seen[0] = len(spec.train)
        trainable = model.head.weight.numel() + model.head.bias.numel()
    else:
        # Built only here: a discriminant head needs no Avalanche dataset, and so no Avalanche import.
        train_data = make_dataset(spec.train, tokenizer=loaded.tokenizer, label_index=index,
                                  max_length=config.max_length)
        memory = (make_dataset(spec.replay, tokenizer=loaded.tokenizer, label_index=index,
                               max_length=config.max_length) if spec.replay else None)
        train_config = config
        if spec.adapter.enabled and spec.adapter.learning_rate is not None:
            train_config = config.model_copy(update={"learning_rate": spec.adapter.learning_rate})
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        with warnings.catch_warnings():
            # Avalanche warns that no metric loggers are attached: lifelong evaluates on its own.
            warnings.filterwarnings("ignore", message="No loggers specified")
            from learners.strategies import build_strategy, export_state  # Avalanche: the worker only

            strategy = build_strategy(
                model=model, config=train_config, device=device, memory=memory, state=parent.state,
                parent_model=parent_model, parent_label_count=len(parent_labels), generation=parent.generation,
                progress=_on_progress, progress_every_s=1.0, cancelled=cancelled,
            )
            from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

            experience = benchmark_from_datasets(train=[train_data]).train_stream[0]
            train_started = time.perf_counter()
            strategy.train(experience, eval_streams=[])
            train_seconds = time.perf_counter() - train_started

        state = export_state(strategy)
    generation = parent.generation + 1
    buffer.update(sample_ids=[ex.sample_id for ex in sorted(spec.train, key=lambda e: e.sample_id)],
                  labels=[index[ex.label] for ex in sorted(spec.train, key=lambda e: e.sample_id)])
    model.eval()
    model.to("cpu")
    if spec.adapter.enabled:
        _finish_adapter(loaded, spec.adapter, base)
    out = spec.output_dir
    save_classifier(loaded, out)
    if state.tensors:
        save_file({k: v.contiguous() for k, v in state.tensors.items()}, str(out / STATE_TENSORS))
    buffer_state = buffer.to_state()
    examples = examples_seen[0]
    result = TrainingResult(
        status="trained", output_dir=str(out), labels=list(model.labels), new_labels=new_labels,
        flagged_labels=flagged, buffer_state=buffer_state, buffer_members=[m[0] for m in buffer.members],
        generation=generation, examples_trained=examples,
        examples_per_second=examples / train_seconds if train_seconds > 0 else 0.0,
        duration_seconds=time.perf_counter() - started, final_loss=losses[-1] if losses else None,
        trainable_parameters=trainable, adapter=loaded.adapter.describe() if loaded.adapter is not None else None,
    )
    meta = {
        "generation": generation,
        "strategy": config.model_dump(),
        "buffer": buffer_state,
        "parent_labels": parent_labels,
        "new_labels": new_labels,
        "examples_trained": examples,
        "examples_per_second": result.examples_per_second,
        "torch_threads": torch.get_num_threads(),
        "adapter": result.adapter,
        "trainable_parameters": trainable,
    }
    (out / STATE_JSON).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    logger.info("trained generation %d on %d examples (%d new labels) at %.1f examples/s; %d trainable "
                "parameters, artifact %.2f MB", generation, len(spec.train), len(new_labels),
                result.examples_per_second, trainable, size / 1e6)
    return replace(result, artifact_bytes=size)


def _finish_adapter(loaded: LoadedClassifier, config: AdapterConfig, base: tuple[Path, str] | None) -> None:
    """Take the trained adapter out of the encoder, merge it in (on the CPU, as loading
    does) and record what the candidate stores: the adapter, or everything when the
    encoder was not a base model's."""
    from learners.lora import LoraAdapter, adapter_tensors, merge_lora

    tensors = adapter_tensors(loaded.model)
    merge_lora(loaded.model)
    kept = loaded.adapter.config if loaded.adapter is not None else config
    loaded.adapter = (LoraAdapter(config=kept, base_model=base[0], base_sha256=base[1], tensors=tensors)
                      if base is not None else None)
