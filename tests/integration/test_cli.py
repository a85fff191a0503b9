"""The ``lifelong`` command as a user runs it: a real process, real files, the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from daemon.ingest.broker import EmbeddedBroker
from storage.engine import head_revision
from tests.conftest import running_ingestor, settings_for


def lifelong(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``lifelong ARGS`` in its own process group: on a timeout the brokers and workers it
    started (demo, bench) are killed with it instead of being left behind."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIFELONG_")}
    process = subprocess.Popen([sys.executable, "-m", "daemon", *args], env={**base, **(env or {})}, cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


class TestConfigShow:
    def test_config_show_masks_secrets(self, tmp_path: Path) -> None:
        file = tmp_path / "c.yaml"
        file.write_text("api:\n  token: very-secret-token\ndatabase:\n  url: postgresql+psycopg://u:pw123@h/db\n")
        result = lifelong("--config", str(file), "config", "show", "--json")
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert shown["api"]["token"] == "**********"
        assert shown["database"]["url"] == "postgresql+psycopg://u:***@h/db"
        assert "very-secret-token" not in result.stdout and "pw123" not in result.stdout

    def test_unknown_key_fails_in_one_line_naming_it(self, tmp_path: Path) -> None:
        file = tmp_path / "c.yaml"
        file.write_text("ingest:\n  max_text_charz: 5\n")
        result = lifelong("--config", str(file), "config", "show")
        assert result.returncode == 2
        assert "ingest.max_text_charz: Extra inputs are not permitted" in result.stderr
        assert "Traceback" not in result.stderr


class TestRunRefusesOldSchema:
    def test_run_against_an_unreachable_database_names_the_key_in_one_line(self, tmp_path: Path) -> None:
        env = {"LIFELONG_DATA_DIR": str(tmp_path), "LIFELONG_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
               "LIFELONG_DATABASE__URL": "postgresql+psycopg://lifelong:hunter2@127.0.0.1:1/nowhere"}
        for args in (["run"], ["db", "upgrade"], ["status"]):
            result = lifelong(*args, env=env, timeout=60)
            assert result.returncode == 1, args
            lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert lines and lines[0].startswith(
                "error: database.url: cannot connect to postgresql+psycopg://lifelong:***@127.0.0.1:1/nowhere"), args
            assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


    def test_run_against_unmigrated_database_says_what_to_run(self, tmp_path: Path) -> None:
        env = {"LIFELONG_DATA_DIR": str(tmp_path), "LIFELONG_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
        result = lifelong("run", env=env, timeout=60)
        assert result.returncode == 1
        assert "has no lifelong schema; run `lifelong db upgrade` first" in result.stderr

    def test_db_upgrade_then_status_reports_an_empty_store(self, tmp_path: Path) -> None:
        env = {"LIFELONG_DATA_DIR": str(tmp_path)}
        upgraded = lifelong("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        assert f"database at revision {head_revision()} (was empty)" in upgraded.stdout
        status = lifelong("status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout) == {
            "samples": {"train": 0, "held_out": 0, "total": 0}, "labels": {}, "dead_letters": {}, "partitions": []
        }


class TestProduce:
    def test_produce_csv_then_ingest_stores_every_row(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
    ) -> None:
        csv_file = tmp_path / "data.csv"
        csv_file.write_text('id,text,label\n1,"hello, world",greet\n2,bye now,farewell\n3,,greet\n')
        result = lifelong("produce", "--file", str(csv_file), "--topic", topic,
                          "--bootstrap-servers", broker.bootstrap_servers)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"produced 3 records to {topic}"
        with running_ingestor(settings_for(broker, topic, sqlite_url, tmp_path)) as running:
            running.wait_stored(3)
        assert running.value("lifelong_ingest_records_stored_total") == 2
        assert running.value("lifelong_ingest_dead_letters_total", {"reason": "missing_text"}) == 1

    def test_produce_missing_file_is_one_line_error(self, broker: EmbeddedBroker, tmp_path: Path) -> None:
        result = lifelong("produce", "--file", str(tmp_path / "none.jsonl"), "--bootstrap-servers",
                          broker.bootstrap_servers)
        assert result.returncode == 2
        assert result.stderr.strip().startswith("error: cannot read")


class TestDemo:
    def test_demo_human_output_says_where_the_api_is_and_ends_with_a_table(self, tmp_path: Path) -> None:
        result = lifelong("demo", "--quick", "--no-train", "--workdir", str(tmp_path / "demo"), timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Prometheus metrics at http://127.0.0.1:" in result.stdout
        assert "/metrics" in result.stdout and "api-token" in result.stdout
        assert "demo summary" in result.stdout
        assert (tmp_path / "demo" / "demo-report.md").is_file()

    def test_demo_quick_streams_the_bundled_sample_in_stages(self, tmp_path: Path) -> None:
        result = lifelong("demo", "--quick", "--json", "--no-train", "--workdir", str(tmp_path / "demo"), timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        stages = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert [s["stage"] for s in stages] == ["stage 1", "stage 2"]
        assert [len(s["new_labels"]) for s in stages] == [10, 10]
        final = stages[-1]["status"]
        assert final["samples"]["total"] == 1200
        assert len(final["labels"]) == 20
        assert sum(final["dead_letters"].values()) == 8
        assert all(p["lag"] == 0 for p in final["partitions"])
        # Stage 1 only holds stage-1 labels.
        assert set(stages[0]["status"]["labels"]) == set(stages[0]["new_labels"])

        status = lifelong("status", "--json", env={"LIFELONG_DATA_DIR": str(tmp_path / "demo")})
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["samples"]["total"] == 1200

    def test_demo_retrains_after_each_stage_and_reports(self, tmp_path: Path) -> None:
        from tests.tiny_model import build_tiny_bert, synthetic_examples

        labels = ["c0", "c1", "c2", "c3"]
        base = build_tiny_bert(tmp_path / "tiny", labels)
        data = tmp_path / "stream.jsonl"
        data.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n"
                                for label in labels for e in synthetic_examples([label], 50, seed=len(label))))
        env = {"LIFELONG_TRAINING__BASE_MODEL": str(base), "LIFELONG_TRAINING__STRATEGY__LEARNING_RATE": "0.005",
               "LIFELONG_TRAINING__STRATEGY__EPOCHS": "6", "LIFELONG_TRAINING__STRATEGY__MAX_LENGTH": "24"}
        workdir = tmp_path / "demo"
        result = lifelong("demo", "--data", str(data), "--stages", "2", "--json", "--workdir", str(workdir),
                          env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        stages = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        first, second = (s["retrain"] for s in stages)
        assert (first["run"]["status"], first["run"]["outcome"], first["production"]) == (
            "succeeded", "promoted", "v0001")
        assert second["run"]["candidate_version"] == "v0002"
        assert second["run"]["outcome"] in ("promoted", "rejected")
        assert [c["name"] for c in second["gate"]["checks"]][:2] == ["eval_samples", "primary_improvement"]
        # The naive baseline forgets stage 1 (it trains on stage 2 alone); the served model keeps it.
        held = [s["held_out_accuracy"] for s in stages]
        assert all(0.0 <= h["served"] <= 1.0 and 0.0 <= h["naive"] <= 1.0 for h in held)
        assert held[1]["naive"] <= 0.6 < held[1]["served"]
        report = (workdir / "demo-report.md").read_text()
        assert "| stage 1 | 2 |" in report and "v0002" in report and "| naive fine-tuning |" in report
        assert (workdir / "demo-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class TestTrain:
    def test_train_from_file_then_continue_from_the_candidate(self, tmp_path: Path) -> None:
        from tests.tiny_model import build_tiny_bert, synthetic_examples

        base = build_tiny_bert(tmp_path / "tiny", ["c0", "c1", "c2", "c3"])
        env = {"LIFELONG_TRAINING__BASE_MODEL": str(base), "LIFELONG_TRAINING__STRATEGY__LEARNING_RATE": "0.003",
               "LIFELONG_TRAINING__STRATEGY__MAX_LENGTH": "24"}
        first = tmp_path / "first.jsonl"
        first.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n"
                                 for e in synthetic_examples(["c0", "c1"], 20, seed=1)) + "not json\n")
        result = lifelong("train", "--data", str(first), "--output", str(tmp_path / "v1"), "--strategy", "ewc",
                          "--epochs", "2", "--json", env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        v1 = json.loads(result.stdout)
        assert (v1["status"], v1["labels"], v1["generation"], v1["rejected_records"]) == ("trained", ["c0", "c1"], 1, 1)
        assert v1["examples_trained"] == 2 * 40

        second = tmp_path / "second.jsonl"
        second.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n"
                                  for e in synthetic_examples(["c2", "c3"], 10, seed=2)))
        result = lifelong("train", "--data", str(second), "--output", str(tmp_path / "v2"), "--parent",
                          str(tmp_path / "v1"), "--strategy", "ewc", "--json", env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        v2 = json.loads(result.stdout)
        assert (v2["generation"], v2["labels"], v2["new_labels"]) == (2, ["c0", "c1", "c2", "c3"], ["c2", "c3"])

    def test_train_with_missing_base_model_is_one_clear_line(self, tmp_path: Path) -> None:
        data = tmp_path / "d.jsonl"
        data.write_text('{"text": "hello", "label": "greet"}\n')
        result = lifelong("train", "--data", str(data), "--output", str(tmp_path / "v1"),
                          env={"LIFELONG_TRAINING__BASE_MODEL": str(tmp_path / "missing")}, timeout=120)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: training failed (error): ModelLoadError: model directory {tmp_path / 'missing'} does not exist or is not a directory"
        )
        assert not (tmp_path / "v1").exists()
