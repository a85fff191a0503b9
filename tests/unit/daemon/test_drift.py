"""The drift detectors on streams with known answers (seeded, so each run is the same)."""

from __future__ import annotations

import random

from daemon.metrics import DRIFT_DETECTORS
from daemon.training.drift import DETECTORS, INSUFFICIENT, DriftDetector


def _stream(n: int, mean: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [min(1.0, max(0.0, rng.gauss(mean, 0.08))) for _ in range(n)]


def test_too_few_values_are_insufficient_data_and_never_fire() -> None:
    detector = DriftDetector("low_confidence", delta=0.002, min_samples=300)
    fired = [detector.update(v) for v in _stream(100, 0.9, 1) + _stream(150, 0.3, 2)]
    assert not any(fired) and detector.state == INSUFFICIENT
    assert detector.view()["samples"] == 250


def test_a_stable_stream_does_not_fire() -> None:
    detector = DriftDetector("low_confidence", delta=0.002, min_samples=100)
    assert not any(detector.update(v) for v in _stream(5000, 0.9, 3))
    assert detector.state == "stable" and abs((detector.mean or 0) - 0.9) < 0.01


def test_a_shift_fires_soon_after_it_and_reset_starts_over() -> None:
    detector = DriftDetector("low_confidence", delta=0.002, min_samples=100)
    values = _stream(1000, 0.9, 4) + _stream(1000, 0.6, 5)
    first = next(i for i, v in enumerate(values) if detector.update(v))
    assert 1000 <= first < 1100  # within a hundred values of the shift
    assert detector.state == "drift"
    detector.reset()
    assert detector.state == INSUFFICIENT and detector.samples == 0 and detector.mean is None


def test_the_detectors_are_the_ones_metrics_pre_creates() -> None:
    assert DETECTORS == DRIFT_DETECTORS


def test_the_embedding_detector_tests_each_full_window_against_the_reference() -> None:
    from daemon.training.drift import EmbeddingDrift

    rng = random.Random(7)

    def cloud(n: int, shift: float) -> list[list[float]]:
        return [[rng.gauss(shift, 1.0) for _ in range(8)] for _ in range(n)]

    detector = EmbeddingDrift(window=50, alpha=0.01)
    assert not detector.update_many(cloud(120, 0.0)) and detector.state == INSUFFICIENT  # no reference yet
    detector.reference = cloud(100, 0.0)
    assert not detector.update_many(cloud(100, 0.0))
    assert detector.state == "stable" and detector.p_value is not None and detector.p_value > 0.01
    assert detector.update_many(cloud(50, 1.0)) and detector.state == "drift"
    detector.reset()
    assert detector.state == INSUFFICIENT and detector.reference is not None  # the reference outlives a reset
