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

from daemon.control.bench_cli import BENCHMARKS
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


def test_ingest_benchmark_measures_a_variant_beside_the_defaults(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    result = bench("ingest", "--records", "2000", "--rounds", "1", "--memory-records", "0", "--json", str(out),
                   "--variant", 'keep:relabeled_text="keep"', "--log-level", "WARNING")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    variant = figures["rounds"][0]["variants"]["keep"]
    assert variant["records"] == 2000
    assert variant["vs_default"] == pytest.approx(variant["rate"] / figures["rounds"][0]["lifelong"]["rate"])
    assert figures["variants"]["keep"]["ingest"] == {"relabeled_text": "keep"}
    assert "keep:" in result.stdout


def test_ingest_benchmark_refuses_a_variant_setting_that_does_not_exist() -> None:
    result = bench("ingest", "--records", "100", "--memory-records", "0", "--variant", "x:no_such_key=1")
    assert result.returncode != 0
    assert "no_such_key" in result.stderr


def test_predict_benchmark_reports_ordered_percentiles(tmp_path: Path) -> None:
    out = tmp_path / "predict.json"
    result = bench("predict", "--requests", "8", "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert 0 < figures["single_p50_ms"] <= figures["single_p99_ms"]
    assert 0 < figures["batch32_p50_ms"] <= figures["batch32_p99_ms"]
    assert figures["batch32_texts_per_s"] == pytest.approx(32 / (figures["batch32_p50_ms"] / 1000))
    assert "single text : p50" in result.stdout
    # The prediction log's case ran beside it and stored every answer it was handed.
    assert 0 < figures["single_logged_p50_ms"] <= figures["single_logged_p99_ms"] and figures["logged_rows"] == 8
    assert figures["logged_p99_ratio"] == pytest.approx(figures["single_logged_p99_ms"] / figures["single_p99_ms"])


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


def _tiny_stream(tmp_path: Path) -> list[str]:
    """A tiny BERT, six synthetic intents as train JSONL and test CSV, and a config the baselines can learn with."""
    from tests.tiny_model import build_tiny_bert, synthetic_examples

    labels = [f"intent{i}" for i in range(6)]
    model = build_tiny_bert(tmp_path / "tiny", labels)
    train = synthetic_examples(labels, 40, seed=1)
    test = synthetic_examples(labels, 15, seed=2)
    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in train), encoding="utf-8")
    (tmp_path / "test.csv").write_text("text,label\n" + "".join(f"{e.text},{e.label}\n" for e in test),
                                       encoding="utf-8")
    (tmp_path / "config.yaml").write_text("training:\n  strategy:\n    learning_rate: 0.003\n    epochs: 8\n",
                                          encoding="utf-8")
    return ["--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.csv"), "--tasks", "3",
            "--classes-per-task", "2", "--base-model", str(model), "--config", str(tmp_path / "config.yaml")]


def test_continual_benchmark_runs_the_real_daemon_and_reports_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = bench("continual", *_tiny_stream(tmp_path), "--freshness-recall", "0.5", "--stage-timeout-s", "120",
                   "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stage 3/3: 6 labels, 80 records" in result.stdout  # progress while it runs
    report = json.loads((out / "continual.json").read_text())
    daemon = report["daemon"]
    stages = daemon["stages"]
    assert [s["stage"] for s in stages] == [1, 2, 3] and [s["labels"] for s in stages] == [2, 4, 6]
    assert [len(s["new_labels"]) for s in stages] == [2, 2, 2] and all(s["records_sent"] == 80 for s in stages)
    assert stages[-1]["samples"]["total"] == 240  # every record stored, none dead-lettered
    for s in stages:
        assert 0.0 <= s["accuracy"] <= 1.0 and 0.0 <= s["new_labels_recall"] <= 1.0
        assert s["decision"] in ("promoted", "rejected") and s["checks"], s
        assert s["run"]["status"] == "succeeded" and s["seconds"]["total"] > 0
        assert len(s["groups"]) == s["stage"]
    assert stages[0]["decision"] == "promoted" and stages[0]["forgetting"] is None
    assert all(isinstance(s["forgetting"], float) for s in stages[1:])
    assert daemon["final"] == stages[-1]["accuracy"]
    assert daemon["average"] == pytest.approx(sum(s["accuracy"] for s in stages) / 3)
    assert daemon["promoted"] == sum(s["decision"] == "promoted" for s in stages)
    baselines = report["baselines"]
    assert [len(baselines[name]["stages"]) for name in ("naive", "replay")] == [3, 3]
    assert baselines["joint"]["labels"] == 6
    assert baselines["joint"]["accuracy"] >= baselines["naive"]["final"]  # the bounds are the right way round
    freshness = report["freshness"]
    assert [f["stage"] for f in freshness["stages"]] == [1, 2]
    assert freshness["stages"][0]["seconds"] is not None and freshness["stages"][0]["seconds"] > 0
    table = (out / "continual.md").read_text()
    assert "| stage | labels | slda (daemon) |" in table and "| joint (upper bound) |" in table
    assert f"| 3 | 6 | {100 * stages[-1]['accuracy']:.1f} |" in table
    assert (out / "continual.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "daemon.log").read_text().rstrip().endswith("lifelong stopped")  # stopped, not left behind


def test_continual_benchmark_scores_out_of_scope_texts_through_the_daemon(tmp_path: Path) -> None:
    from tests.integration.test_out_of_scope import UNSEEN, _out_of_scope
    from tests.tiny_model import build_tiny_bert, synthetic_examples

    labels = [f"intent{i}" for i in range(4)]
    model = build_tiny_bert(tmp_path / "tiny", [*labels, *UNSEEN])
    data = {"train": [[e.text, e.label] for e in synthetic_examples(labels, 40, seed=1)],
            "test": [[e.text, e.label] for e in synthetic_examples(labels, 10, seed=2)],
            "oos_train": [[t, "oos"] for t in _out_of_scope(80, seed=3)],
            "oos_test": [[t, "oos"] for t in _out_of_scope(30, seed=4)]}
    (tmp_path / "data_full.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "config.yaml").write_text("training:\n  strategy:\n    learning_rate: 0.003\n    epochs: 8\n",
                                          encoding="utf-8")
    out = tmp_path / "report"
    result = bench("continual", "--data", str(tmp_path / "data_full.json"), "--tasks", "2", "--classes-per-task", "2",
                   "--base-model", str(model), "--config", str(tmp_path / "config.yaml"), "--oos", "--baselines", "none",
                   "--no-freshness", "--stage-timeout-s", "120", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    daemon = json.loads((out / "continual.json").read_text())["daemon"]
    assert daemon["stages"][-1]["samples"]["total"] == 160 + 80  # the oos records are stored too
    oos = daemon["out_of_scope"]
    assert (oos["oos_texts"], oos["in_scope_texts"], oos["oos_trained_as"]) == (30, 40, 80)
    for key in ("oos_recall", "in_scope_abstained", "in_scope_answered_accuracy", "auroc"):
        assert 0.0 <= oos[key] <= 1.0, key
    assert "Out of scope (final model, 30 out-of-scope and 40 in-scope test texts" in (out / "continual.md").read_text()


@pytest.mark.parametrize(("extra", "message"), [
    (["--oos"], "error: --oos needs out-of-scope texts"),
    (["--data", "missing.json"], "error: dataset missing.json not found"),
    (["--tasks", "4"], "error: 4 x 2 labels asked for, the dataset has 6"),
    (["--freshness-recall", "2"], "error: --freshness-recall must be in (0, 1], got 2.0"),
])
def test_continual_benchmark_bad_input_is_one_line_before_anything_starts(
        tmp_path: Path, extra: list[str], message: str) -> None:
    args = _tiny_stream(tmp_path)
    if extra[0] == "--data":
        args = args[args.index("--tasks"):]
    result = bench("continual", *args, *extra, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_continual_benchmark_csv_without_a_label_column_is_refused(tmp_path: Path) -> None:
    args = _tiny_stream(tmp_path)
    (tmp_path / "test.csv").write_text("text,intent\nhello,intent0\n", encoding="utf-8")
    result = bench("continual", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "test.csv: the CSV header lacks column(s) ['label'] (need text,label)" in result.stderr


def test_continual_benchmark_says_why_the_daemon_did_not_start_and_stops_the_broker(tmp_path: Path) -> None:
    args = _tiny_stream(tmp_path)
    (tmp_path / "config.yaml").write_text("api:\n  host: 203.0.113.1\n", encoding="utf-8")  # not this machine's
    result = bench("continual", *args, "--baselines", "none", "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: the daemon exited (1) while starting: error: API server did "
                                            "not start on 203.0.113.1")
    assert "stage 1/3" not in result.stdout  # nothing was sent
    assert not (tmp_path / "out" / "continual.json").exists()


def test_reliability_report_states_only_what_passing_tests_measured(tmp_path: Path) -> None:
    import sys

    out = tmp_path / "RELIABILITY.md"
    result = subprocess.run([sys.executable, "-m", "benchmarks.reliability", "--out", str(out), "--",
                             "-k", "fuzzed and sqlite"], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = out.read_text(encoding="utf-8")
    rows = [line for line in report.splitlines() if line.startswith("| fuzzed records")]
    assert len(rows) == 1 and "produced = 600" in rows[0] and "lost = 0" in rows[0], report
    assert "Records lost over all cases: **0**" in report and "all passed" in report
    # The report is nothing but figures of tests that ran: a subset gives only its own rows.
    assert "SIGKILL" not in report


def test_soak_streams_and_retrains_with_nothing_lost_and_no_errors(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    result = bench("soak", "--records", "6000", "--retrains", "2", "--chunk", "2000", "--json", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["first_errors"] == [] and figures["error_lines"] == 0, figures["first_errors"]
    assert (figures["records"], figures["lost"]) == (6000, 0), figures
    assert figures["dead_lettered"] == 60 and figures["stored"] == 5940  # 1% malformed, each a dead letter
    assert figures["retrains_succeeded"] == figures["retrains"] == 2
    assert [s["records"] for s in figures["curve"]] == [2000, 4000, 6000]
    assert all(s["rss_mib"] > 0 and s["fds"] > 0 for s in figures["curve"])
    assert "records  retrains  RSS MiB  fds" in result.stdout
