"""``lifelong train``'s pipeline: a file of records to a candidate model, without a daemon.

The records go through the same input contract as ingestion (invalid ones are counted and
skipped), the settings' strategy and buffer apply, and the run happens in a worker process
as a daemon's retrain would. Replay needs the texts of the parent's buffer members, which
live in a daemon's database; training from a parent here therefore continues its learner
state (EWC, SI, LwF) but rehearses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.config import Settings
from daemon.ingest.produce import read_values
from daemon.ingest.records import Limits, Rejection, validate
from daemon.ingest.redaction import Redactor

if TYPE_CHECKING:
    from learners.data import Example
    from learners.handoff import Progress
    from learners.train import TrainingResult

__all__ = ["OfflineRun", "read_examples", "train_offline"]


@dataclass(frozen=True)
class OfflineRun:
    """What an offline run did: the worker's result and how many records it read."""

    result: TrainingResult
    examples: int
    rejected: int


def read_examples(data: Path, settings: Settings, *, first_id: int = 1) -> tuple[list[Example], int]:
    """Every valid record of ``data`` as a training example (ids from ``first_id``), and how many were invalid."""
    from learners.data import Example

    limits = Limits(max_text_chars=settings.ingest.max_text_chars, max_label_chars=settings.ingest.max_label_chars)
    # The same redaction as ingestion (ingest.redact_pii): a model trained here learns no PII either.
    redactor = Redactor(settings.ingest.redact_pii, phone_regions=settings.ingest.pii_phone_regions) \
        if settings.ingest.redact_pii else None
    examples: list[Example] = []
    rejected = 0
    for value in read_values(data):
        checked = validate(value, limits)
        if isinstance(checked, Rejection):
            rejected += 1
            continue
        text = checked.text if redactor is None else redactor.redact(checked.text).text
        examples.append(Example(first_id + len(examples), text, checked.label))
    return examples, rejected


def train_offline(
    settings: Settings,
    *,
    data: Path,
    output: Path,
    parent: Path | None = None,
    strategy: str | None = None,
    epochs: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> OfflineRun:
    """Train a candidate into ``output`` (which must not exist) from ``data``, continuing ``parent`` if given."""
    from learners.train import TrainingSpec, load_parent_state
    from learners.worker import TrainingWorker

    training = settings.training
    overrides = {k: v for k, v in {"name": strategy, "epochs": epochs}.items() if v is not None}
    config = training.strategy.model_validate({**training.strategy.model_dump(), **overrides})
    first_id = 1
    if parent is not None:
        # New examples take ids after every id the parent's buffer has seen, so none collides.
        buffer_state = load_parent_state(parent).buffer_state or {}
        first_id = int(buffer_state.get("high_water") or 0) + 1
    examples, rejected = read_examples(data, settings, first_id=first_id)
    spec = TrainingSpec(
        output_dir=output, train=examples, strategy=config, buffer=training.buffer.to_config(),
        parent_dir=parent, base_model=training.base_model, min_samples_per_label=training.min_samples_per_label,
        device=training.device, torch_threads=training.torch_threads, adapter=training.adapter,
    )
    result = TrainingWorker(spec, timeout_s=training.timeout_s, on_progress=on_progress,
                            start_method=training.worker_start).run()
    return OfflineRun(result=result, examples=len(examples), rejected=rejected)
