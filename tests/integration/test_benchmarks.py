"""The benchmark scripts still run and measure what they claim, through ``lifelong bench``.

These are not timing tests: nothing here asserts a rate. They run each script on a
small input as a user would (a real ``lifelong`` process, the real embedded broker,
real SQLite files, the bundled model) and check that the figures are internally
consistent, so a script that silently stopped counting or measuring fails here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from daemon.bench_cli import BENCHMARKS
from tests.integration.test_cli import lifelong

SAMPLE = Path(__file__).resolve().parents[2] / "daemon" / "data" / "clinc150_sample.jsonl"

pytestmark = pytest.mark.timeout(900)


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return lifelong("bench", *args, timeout=600)


def test_bench_lists_every_script_and_passes_help_through() -> None:
    listed = lifelong("bench", "--help")
    assert listed.returncode == 0, listed.stderr
    for name in BENCHMARKS:
        assert name in listed.stdout
    own = lifelong("bench", "ingest", "--help")
    assert own.returncode == 0, own.stderr
    assert "--records" in own.stdout and "--memory-records" in own.stdout  # the script's argparse answered


def test_bench_passes_the_scripts_argument_errors_on() -> None:
    result = bench("ingest", "--records", "0")
    assert result.returncode == 2
    assert "lifelong bench ingest: error: --records and --rounds must be positive" in result.stderr


def test_ingest_benchmark_counts_every_record(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    result = bench("ingest", "--records", "3000", "--rounds", "2", "--memory-records", "20000",
                   "--memory-sample-every", "10000", "--json", str(out), "--log-level", "WARNING")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert len(figures["rounds"]) == 2
    for row in figures["rounds"]:
        assert row["bare"]["records"] == row["lifelong"]["records"] == 3000
        assert row["ratio"] == pytest.approx(row["lifelong"]["rate"] / row["bare"]["rate"])
        assert 0 < row["bare"]["first_record_s"] <= row["bare"]["seconds"]
    summary = figures["summary"]
    assert summary["ratio_ok"] == (summary["ratio"] >= summary["ratio_target"])
    memory = figures["memory"]
    assert memory["records"] == 20000 and len(memory["samples"]) == 2
    assert memory["samples"][-1][0] == 20000 and memory["database_mb"] > 0
    assert f"ratio:            {summary['ratio']:>10.2f}" in result.stdout


def test_predict_benchmark_reports_ordered_percentiles(tmp_path: Path) -> None:
    out = tmp_path / "predict.json"
    result = bench("predict", "--requests", "8", "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert 0 < figures["single_p50_ms"] <= figures["single_p99_ms"]
    assert 0 < figures["batch32_p50_ms"] <= figures["batch32_p99_ms"]
    assert figures["batch32_texts_per_s"] == pytest.approx(32 / (figures["batch32_p50_ms"] / 1000))
    assert "single text : p50" in result.stdout


def test_train_benchmark_trains_both_loops_on_the_same_data(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    result = bench("train", "--dataset", str(SAMPLE), "--intents", "4", "--examples", "32",
                   "--replay-examples", "0", "--repeats", "1", "--retries", "0", "--warmup-steps", "0",
                   "--max-other-load", "2", "--json", str(out), "--log-level", "WARNING")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["config"]["examples"] == 32 and figures["config"]["intents"] == 4
    (pair,) = figures["pairs"]
    assert pair["plain"]["examples"] == pair["learners"]["examples"] == 32
    summary = figures["summary"]
    assert summary["plain_examples_per_second"] > 0 and summary["learners_examples_per_second"] > 0
    assert summary["ratio"] == pytest.approx(summary["learners_examples_per_second"]
                                             / summary["plain_examples_per_second"])


def test_train_benchmark_without_its_dataset_says_what_to_pass(tmp_path: Path) -> None:
    result = bench("train", "--dataset", str(tmp_path / "missing.json"))
    assert result.returncode == 2
    assert "does not exist: pass CLINC150's data_full.json" in result.stderr


def test_learner_benchmark_scores_every_stage_on_the_labels_seen(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    labels = sorted({r["label"] for r in rows})[:6]
    pairs = [[r["text"], r["label"]] for r in rows if r["label"] in labels]
    data = tmp_path / "data_full.json"
    data.write_text(json.dumps({"train": pairs[::2], "test": pairs[1::2]}), encoding="utf-8")
    out = tmp_path / "learner.json"
    result = bench("learner", "--data", str(data), "--tasks", "3", "--classes-per-task", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (report,) = json.loads(out.read_text())
    assert report["strategy"] == "slda"
    assert [s["stage"] for s in report["stages"]] == [1, 2, 3]
    assert [s["labels"] for s in report["stages"]] == [2, 4, 6]
    assert all(0.0 <= s["accuracy"] <= 1.0 for s in report["stages"])
    assert report["final"] == report["stages"][-1]["accuracy"]
    assert "slda: final accuracy" in result.stdout


def test_learner_benchmark_refuses_more_labels_than_exist(tmp_path: Path) -> None:
    data = tmp_path / "data_full.json"
    data.write_text(json.dumps({"train": [["a", "x"], ["b", "y"]], "test": [["a", "x"]]}), encoding="utf-8")
    result = bench("learner", "--data", str(data), "--tasks", "3", "--classes-per-task", "2")
    assert result.returncode == 1
    assert "error: 3 x 2 labels asked for, the dataset has 2" in result.stderr
