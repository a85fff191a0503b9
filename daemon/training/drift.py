"""Drift of live traffic away from what production was trained on, as a retrain trigger.

Two signals, each a stream of numbers watched by River's ADWIN (an adaptive window that
reports when the mean of its recent part differs from the older part beyond a bound set
by ``delta``):

- ``low_confidence``: for every text ``/v1/predict`` answered, 1 if its calibrated
  confidence was below the serving version's abstain threshold, else 0. Each version's
  threshold is fitted to about ``evaluation.abstain_in_scope`` (5%) of in-scope texts, so
  this share is comparable across versions; texts of a domain the model never saw fall
  below it far more often. (Raw confidences are not: a drop from 0.999 to 0.98 means a lot
  to a fine-tuned model and is invisible to a detector bounded on [0, 1].)
- ``label_mix``: the surprisal, ``-log p(label)``, of every labeled sample stored since,
  under production's training label distribution (Laplace-smoothed, so a label production
  does not know is the most surprising). A change in the mix of incoming labels moves it.

and a third that compares distributions rather than a mean:

- ``embedding``: every ``drift.embedding_window`` served texts, their encoder embeddings
  against those of up to twice as many of production's held-out texts, by a kernel
  two-sample test (MMD with a permutation p-value, ``learners.two_sample``); it fires
  below ``drift.embedding_alpha``. This sees texts that move to another domain even when
  the model stays confident about them.

A detector reports ``insufficient data`` until it has seen ``drift.min_samples`` values
since its last reset and never fires before. On a detection the ``drift`` trigger goes
through the same single-flight door as the others (``schedule.min_gap_s`` respected); the
detector then starts over, and every detector starts over when production changes.

River was chosen over alibi-detect: its detectors are streaming (one update per value,
about 0.2 µs each) with a stated false-alarm bound, and it adds numpy and scipy, where
alibi-detect's two-sample tests work on batches and pull in a deep-learning backend.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from daemon.config import DriftSettings
from daemon.metrics import Metrics
from storage import registry
from storage.models import Label, Sample

__all__ = ["DETECTORS", "DriftDetector", "DriftMonitor", "EmbeddingDrift"]

logger = logging.getLogger(__name__)

DETECTORS = ("low_confidence", "label_mix", "embedding")
INSUFFICIENT = "insufficient data"


class DriftDetector:
    """One signal's ADWIN, with the minimum evidence before it may report a drift."""

    def __init__(self, name: str, *, delta: float, min_samples: int) -> None:
        from river.drift import ADWIN

        self.name = name
        self._make = lambda: ADWIN(delta=delta)
        self.min_samples = min_samples
        self._adwin = self._make()
        self.samples = 0
        self.detected = False

    @property
    def state(self) -> str:
        if self.samples < self.min_samples:
            return INSUFFICIENT
        return "drift" if self.detected else "stable"

    @property
    def mean(self) -> float | None:
        return float(self._adwin.estimation) if self.samples else None

    def update(self, value: float) -> bool:
        """Feed one value; True when this value completes a drift the detector may report."""
        self._adwin.update(value)
        self.samples += 1
        if self._adwin.drift_detected and self.samples >= self.min_samples:
            self.detected = True
            return True
        return False

    def reset(self) -> None:
        self._adwin = self._make()
        self.samples = 0
        self.detected = False

    def view(self) -> dict[str, Any]:
        return {"state": self.state, "samples": self.samples, "min_samples": self.min_samples,
                "mean": None if self.mean is None else round(self.mean, 6)}


class EmbeddingDrift:
    """Served embeddings in windows, each tested against production's held-out embeddings."""

    name = "embedding"

    def __init__(self, *, window: int, alpha: float) -> None:
        self.window = window
        self.alpha = alpha
        self.reference: list[list[float]] | None = None
        self._served: list[list[float]] = []
        self.samples = 0
        self.detected = False
        self.p_value: float | None = None

    @property
    def state(self) -> str:
        reference = self.reference  # read once: the drift thread may reset it meanwhile
        if reference is None or len(reference) < 2 or self.p_value is None:
            return INSUFFICIENT
        return "drift" if self.detected else "stable"

    @property
    def mean(self) -> float | None:
        return self.p_value

    def update_many(self, embeddings: list[list[float]]) -> bool:
        """Add served embeddings; test each full window. True when a window drifted."""
        from learners.two_sample import two_sample_test

        fired = False
        if self.reference is None or len(self.reference) < 2:
            self._served = []  # windows start once there is a reference to compare with
            return False
        for row in embeddings:
            self._served.append(row)
            self.samples += 1
            if len(self._served) < self.window:
                continue
            import torch

            # Enough permutations that a p-value below alpha can come out at all (the smallest is 1/(k+1)).
            result = two_sample_test(torch.tensor(self._served), torch.tensor(self.reference),
                                     permutations=max(200, math.ceil(5 / self.alpha)))
            self.p_value = result.p_value
            self._served = []
            if result.p_value < self.alpha:
                self.detected = fired = True
        return fired

    def reset(self) -> None:
        self._served = []
        self.samples = 0
        self.detected = False
        self.p_value = None

    def view(self) -> dict[str, Any]:
        reference = self.reference
        return {"state": self.state, "samples": self.samples, "window": self.window,
                "reference": len(reference) if reference is not None else 0,
                "p_value": None if self.p_value is None else round(self.p_value, 6)}


@dataclass
class _Reference:
    """Production's label distribution and the samples already read."""

    version: str | None
    counts: dict[str, int]
    total: int
    last_sample_id: int


class DriftMonitor:
    """Both detectors, fed from served answers and stored samples, checked on a timer."""

    def __init__(self, engine: Engine, metrics: Metrics, settings: DriftSettings, *,
                 fire: Callable[[str], Any],
                 reference_embeddings: Callable[[str, int, int], list[list[float]] | None] | None = None) -> None:
        self.engine = engine
        self.metrics = metrics
        self.settings = settings
        #: Called with who is asking (``drift:<detectors>``) when a detector fires.
        self._fire = fire
        #: (version, data watermark, how many) -> embeddings of production's held-out texts,
        #: or None while that version is not the one serving.
        self._reference_embeddings = reference_embeddings
        self.detectors: dict[str, DriftDetector | EmbeddingDrift] = {
            name: DriftDetector(name, delta=settings.delta, min_samples=settings.min_samples)
            for name in ("low_confidence", "label_mix")}
        if settings.embedding_window and reference_embeddings is not None:
            self.detectors["embedding"] = EmbeddingDrift(window=settings.embedding_window,
                                                         alpha=settings.embedding_alpha)
        self._served: deque[float] = deque(maxlen=100_000)
        self._embeddings: deque[list[float]] = deque(maxlen=max(1, 5 * settings.embedding_window))
        self._lock = threading.Lock()
        self._reference: _Reference | None = None

    # ------------------------------------------------------------------ request path

    @property
    def wants_embeddings(self) -> bool:
        return "embedding" in self.detectors

    def observe_served(self, unsure: list[bool], embeddings: list[list[float]] | None = None) -> None:
        """Queue, per served text, whether it fell below the abstain threshold and its
        embedding (the check drains them; nothing is computed on the request path)."""
        with self._lock:
            self._served.extend(1.0 if u else 0.0 for u in unsure)
            if embeddings and self.wants_embeddings:
                self._embeddings.extend(embeddings)

    # ------------------------------------------------------------------ the timer

    def check(self) -> list[str]:
        """Update both detectors with what arrived since the last check; fire on a drift.

        Returns the detectors that fired (for tests and logs)."""
        try:
            version, watermark = self._production()
            if self._reference is None or self._reference.version != version:
                self._reset(version, watermark)
            labels = self._new_labels()
        except SQLAlchemyError as exc:
            logger.warning("drift check skipped, database unavailable: %s", type(exc).__name__)
            return []
        with self._lock:
            served = list(self._served)
            self._served.clear()
            embeddings = list(self._embeddings)
            self._embeddings.clear()
        fired = []
        if version is not None and self._feed("low_confidence", served):
            fired.append("low_confidence")
        if version is not None and self._feed("label_mix", [self._surprisal(label) for label in labels]):
            fired.append("label_mix")
        embedding = self.detectors.get("embedding")
        if version is not None and isinstance(embedding, EmbeddingDrift):
            if embedding.reference is None and self._reference_embeddings is not None:
                embedding.reference = self._reference_embeddings(version, watermark, 2 * embedding.window)
            if embedding.update_many(embeddings):
                fired.append("embedding")
        for name, detector in self.detectors.items():
            self.metrics.drift_samples.labels(detector=name).set(detector.samples)
            if detector.mean is not None:
                self.metrics.drift_mean.labels(detector=name).set(detector.mean)
        for name in fired:
            self.metrics.drift_detected.labels(detector=name).inc()
            logger.warning("drift detected by %s after %d samples (mean now %.4f); asking for a retrain",
                           name, self.detectors[name].samples, self.detectors[name].mean or 0.0)
            self.detectors[name].reset()
        if fired:
            self._fire(f"drift:{','.join(fired)}")
        return fired

    def view(self) -> dict[str, Any]:
        views = {name: detector.view() for name, detector in self.detectors.items()}
        views.setdefault("embedding", {"state": "off"})
        return {"enabled": True, "reference_version": self._reference.version if self._reference else None, **views}

    def _feed(self, name: str, values: list[float]) -> bool:
        detector = self.detectors[name]
        assert isinstance(detector, DriftDetector)
        fired = False
        for value in values:
            fired = detector.update(value) or fired
        return fired

    def _production(self) -> tuple[str | None, int]:
        """Production's version and data watermark: the reference the signals compare against."""
        with Session(self.engine) as session:
            name = registry.get_alias(session, registry.PRODUCTION)
            version = registry.get_version(session, name) if name else None
            return (name, version.data_watermark if version else 0)

    def _reset(self, version: str | None, watermark: int) -> None:
        counts: dict[str, int] = {}
        last = 0
        with Session(self.engine) as session:
            if version is not None:
                rows = session.execute(
                    select(Label.name, func.count()).join(Sample, Sample.label_id == Label.id)  # type: ignore[arg-type]
                    .where(Sample.id <= watermark).group_by(Label.name)).all()  # type: ignore[operator]
                counts = {name: int(n) for name, n in rows}
            last = int(session.execute(select(func.coalesce(func.max(Sample.id), 0))).scalar_one())
        self._reference = _Reference(version, counts, sum(counts.values()), last)
        for detector in self.detectors.values():
            detector.reset()
        embedding = self.detectors.get("embedding")
        if isinstance(embedding, EmbeddingDrift):
            embedding.reference = None  # computed from the new production at the next check
        with self._lock:
            self._served.clear()
            self._embeddings.clear()

    def _new_labels(self) -> list[str]:
        reference = self._reference
        if reference is None:
            return []
        with Session(self.engine) as session:
            rows = session.execute(
                select(Sample.id, Label.name).join(Label, Sample.label_id == Label.id)  # type: ignore[arg-type]
                .where(Sample.id > reference.last_sample_id).order_by(Sample.id).limit(50_000)).all()  # type: ignore[arg-type]
        if rows:
            reference.last_sample_id = int(rows[-1][0])
        return [name for _, name in rows]

    def _surprisal(self, label: str) -> float:
        reference = self._reference
        assert reference is not None
        kinds = len(reference.counts) + 1  # the known labels and "any label production does not know"
        return -math.log((reference.counts.get(label, 0) + 1) / (reference.total + kinds))
