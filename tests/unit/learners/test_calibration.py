"""Temperature scaling, abstain thresholds and AUROC on synthetic logits with known answers."""

from __future__ import annotations

import math
import random

import pytest

from learners.calibration import (
    Calibration,
    auroc,
    calibrated,
    cross_fitted_abstain_rate,
    fit_calibration,
    fit_temperature,
)


def _peaked(n: int, labels: int, *, margin: float, noise: float, seed: int) -> tuple[list[list[float]], list[int]]:
    """Logits whose true class leads by ``margin`` plus Gaussian noise (overconfident when ``margin`` is big)."""
    rng = random.Random(seed)
    rows, ys = [], []
    for _ in range(n):
        y = rng.randrange(labels)
        row = [rng.gauss(0, noise) for _ in range(labels)]
        row[y] += margin
        rows.append(row)
        ys.append(y)
    return rows, ys


class TestTemperature:
    def test_overconfident_logits_get_a_temperature_above_one(self) -> None:
        # Scores scaled x20 after a noisy margin: right ~85% of the time but with probability ~1.
        rows, ys = _peaked(600, 5, margin=1.5, noise=1.0, seed=1)
        scaled = [[20 * v for v in row] for row in rows]
        temperature = fit_temperature(scaled, ys)
        assert 10 < temperature < 40
        accuracy = sum(max(range(5), key=row.__getitem__) == y for row, y in zip(scaled, ys, strict=True)) / 600
        mean_confidence = sum(calibrated(scaled, temperature)) / 600
        assert abs(mean_confidence - accuracy) < 0.05  # calibrated: confidence tracks accuracy

    def test_nothing_to_fit_on_is_temperature_one(self) -> None:
        assert fit_temperature([], []) == 1.0

    def test_the_temperature_keeps_the_argmax(self) -> None:
        row = [3.0, 1.0, -2.0]
        for t in (0.1, 1.0, 50.0):
            probs = Calibration(t, 0.0, 1, 0, 0.0).probabilities(row)
            assert max(range(3), key=probs.__getitem__) == 0
            assert math.isclose(sum(probs), 1.0)


class TestThreshold:
    def test_the_quantile_rule_abstains_on_the_asked_share_of_in_scope(self) -> None:
        rows, ys = _peaked(1000, 10, margin=3.0, noise=1.0, seed=2)
        cal = fit_calibration(rows, ys, in_scope_abstain=0.05)
        share = sum(cal.abstains(row) for row in rows) / len(rows)
        assert 0.04 <= share <= 0.06
        assert cal.n_out_of_scope == 0 and cal.n_in_scope == 1000

    def test_zero_share_never_abstains(self) -> None:
        rows, ys = _peaked(100, 4, margin=0.5, noise=1.0, seed=3)
        cal = fit_calibration(rows, ys, in_scope_abstain=0.0)
        assert cal.threshold == 0.0 and not any(cal.abstains(row) for row in rows)

    def test_out_of_scope_examples_move_the_threshold_to_catch_more_of_them(self) -> None:
        rows, ys = _peaked(800, 10, margin=4.0, noise=1.0, seed=4)
        oos = [[random.Random(i).gauss(0, 1.0) for _ in range(10)] for i in range(200)]  # no class stands out
        quantile = fit_calibration(rows, ys, in_scope_abstain=0.10)
        fitted = fit_calibration(rows, ys, in_scope_abstain=0.10, oos_logits=oos)
        assert fitted.n_out_of_scope == 200

        def caught(cal: Calibration) -> float:
            return sum(cal.abstains(row) for row in oos) / len(oos)

        assert caught(fitted) >= caught(quantile)
        assert sum(fitted.abstains(row) for row in rows) / len(rows) <= 0.10 + 1e-9  # the cap holds

    def test_round_trip_through_json(self) -> None:
        cal = Calibration(2.5, 0.4, 100, 20, 0.05)
        assert Calibration.from_dict(cal.to_dict()) == cal

    def test_cross_fitting_measures_on_samples_the_threshold_did_not_see(self) -> None:
        rows, ys = _peaked(400, 8, margin=3.0, noise=1.0, seed=5)
        abstained, scored = cross_fitted_abstain_rate(rows, ys, in_scope_abstain=0.05)
        assert scored == 400
        assert 0.0 < abstained / scored < 0.15
        assert cross_fitted_abstain_rate(rows[:1], ys[:1], in_scope_abstain=0.05) == (0, 0)

    def test_cross_fitting_uses_the_rule_the_full_set_gets(self) -> None:
        # 30 out-of-scope samples: Youden's J on the full set, so on each half of 15 too
        # (alone a half would fall back to the quantile rule and measure something else).
        rows, ys = _peaked(400, 8, margin=4.0, noise=1.0, seed=8)
        oos = [[random.Random(100 + i).gauss(0, 1.0) for _ in range(8)] for i in range(30)]
        full = fit_calibration(rows, ys, in_scope_abstain=0.10, oos_logits=oos)
        half = fit_calibration(rows[0::2], ys[0::2], in_scope_abstain=0.10, oos_logits=oos[0::2], min_oos=1)
        quantile = fit_calibration(rows[0::2], ys[0::2], in_scope_abstain=0.10, oos_logits=oos[0::2])
        assert full.n_out_of_scope == 30 and half.threshold != quantile.threshold


class TestAuroc:
    def test_perfect_random_and_reversed_separation(self) -> None:
        assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
        assert auroc([0.1, 0.2], [0.9, 0.8]) == 0.0
        assert auroc([0.5, 0.5], [0.5, 0.5]) == 0.5

    def test_matches_the_pairwise_definition(self) -> None:
        rng = random.Random(6)
        ins = [rng.random() for _ in range(50)]
        outs = [rng.random() * 0.8 for _ in range(40)]
        pairs = sum((a > b) + 0.5 * (a == b) for a in ins for b in outs) / (50 * 40)
        assert auroc(ins, outs) == pytest.approx(pairs)

    def test_nothing_to_compare_is_none(self) -> None:
        assert auroc([], [0.1]) is None and auroc([0.1], []) is None
