"""Training in a child process: progress arrives, failures leave nothing behind."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from learners.buffer import BufferConfig
from learners.config import StrategyConfig
from learners.errors import TrainingFailed
from learners.handoff import Progress
from learners.train import TrainingSpec
from learners.worker import PARTIAL_MARKER, TrainingWorker, remove_partial_outputs
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def _spec(tiny_bert: Path, out: Path, *, examples: int, epochs: int) -> TrainingSpec:
    return TrainingSpec(
        output_dir=out,
        train=synthetic_examples(LABELS, examples, seed=1),
        strategy=StrategyConfig(name="replay", learning_rate=3e-3, epochs=epochs, batch_size=8, max_length=24),
        buffer=BufferConfig(size=20),
        base_model=tiny_bert,
    )


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if PARTIAL_MARKER in p.name]


class TestWorkerSuccess:
    def test_run_reports_progress_and_moves_the_candidate_into_place(self, tiny_bert: Path, tmp_path: Path) -> None:
        reports: list[Progress] = []
        result = TrainingWorker(_spec(tiny_bert, tmp_path / "v1", examples=30, epochs=2), timeout_s=300,
                                on_progress=reports.append).run()
        assert result.status == "trained"
        assert result.output_dir == str(tmp_path / "v1")
        assert (tmp_path / "v1" / "model.safetensors").is_file()
        assert (tmp_path / "v1" / "learner_state.json").is_file()
        assert reports, "no progress arrived from the worker"
        assert reports[-1].epoch == 2 and reports[-1].examples == 2 * 90
        assert all(r.examples_per_second > 0 for r in reports)
        assert _leftovers(tmp_path) == []

    def test_worker_warnings_are_logged_by_the_parent(self, tiny_bert: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
        spec = _spec(tiny_bert, tmp_path / "v1", examples=30, epochs=1)
        spec = dataclasses.replace(spec, train=[*spec.train, *synthetic_examples(["c3"], 2, seed=5, start_id=900)],
                                   min_samples_per_label=5)
        with caplog.at_level(logging.WARNING):
            TrainingWorker(spec, timeout_s=300).run()
        forwarded = [r for r in caplog.records if r.name == "learners.train" and "c3" in r.getMessage()]
        assert forwarded, "the child's warning did not reach the parent's logging"
        assert forwarded[0].levelno == logging.WARNING and forwarded[0].worker_pid != os.getpid()

    def test_torch_threads_setting_reaches_the_worker(self, tiny_bert: Path, tmp_path: Path) -> None:
        import dataclasses
        import json

        spec = dataclasses.replace(_spec(tiny_bert, tmp_path / "v1", examples=5, epochs=1), torch_threads=1)
        result = TrainingWorker(spec, timeout_s=300).run()
        assert json.loads((tmp_path / "v1" / "learner_state.json").read_text())["torch_threads"] == 1
        assert result.status == "trained"

    def test_spawn_start_trains_the_same_way_in_a_fresh_interpreter(self, tiny_bert: Path, tmp_path: Path) -> None:
        worker = TrainingWorker(_spec(tiny_bert, tmp_path / "v1", examples=10, epochs=1), timeout_s=300,
                                start_method="spawn")
        assert worker.run().status == "trained"
        assert (tmp_path / "v1" / "model.safetensors").is_file() and _leftovers(tmp_path) == []

    def test_runs_are_forked_from_one_fork_server_not_from_this_process(self, tiny_bert: Path, tmp_path: Path) -> None:
        parents: dict[str, int] = {}
        for name in ("v1", "v2"):
            box: list[TrainingWorker] = []

            def note_parent(_: Progress, name: str = name, box: list[TrainingWorker] = box) -> None:
                if name not in parents:
                    stat = Path(f"/proc/{box[0].pid}/stat").read_text()
                    parents[name] = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: the parent's pid

            box.append(TrainingWorker(_spec(tiny_bert, tmp_path / name, examples=30, epochs=2), timeout_s=300,
                                      on_progress=note_parent))
            assert box[0].run().status == "trained"
        # One warm server forks every run (python -m benchmarks.worker_start measures the gain).
        assert parents["v1"] == parents["v2"] != os.getpid()
        server = Path(f"/proc/{parents['v1']}/cmdline").read_bytes()
        assert b"forkserver" in server, server

    def test_unknown_start_method_is_refused(self, tiny_bert: Path, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="start_method must be one of"):
            TrainingWorker(_spec(tiny_bert, tmp_path / "v1", examples=5, epochs=1), timeout_s=60,
                           start_method="fork")  # type: ignore[arg-type]

    def test_existing_output_is_refused(self, tiny_bert: Path, tmp_path: Path) -> None:
        (tmp_path / "v1").mkdir()
        with pytest.raises(TrainingFailed, match="output_exists"):
            TrainingWorker(_spec(tiny_bert, tmp_path / "v1", examples=5, epochs=1), timeout_s=60).run()


class TestWorkerFailure:
    def test_killed_worker_fails_the_run_and_leaves_no_artifact(self, tiny_bert: Path, tmp_path: Path) -> None:
        worker_box: list[TrainingWorker] = []
        killed = threading.Event()

        def kill_on_first_progress(_: Progress) -> None:
            if not killed.is_set():
                killed.set()
                os.kill(worker_box[0].pid, signal.SIGKILL)

        worker = TrainingWorker(_spec(tiny_bert, tmp_path / "v1", examples=400, epochs=50), timeout_s=300,
                                on_progress=kill_on_first_progress)
        worker_box.append(worker)
        with pytest.raises(TrainingFailed) as failure:
            worker.run()
        assert failure.value.reason == "killed"
        assert "SIGKILL" in failure.value.detail
        assert not (tmp_path / "v1").exists()
        assert _leftovers(tmp_path) == []

    def test_timeout_fails_the_run_and_leaves_no_artifact(self, tiny_bert: Path, tmp_path: Path) -> None:
        worker = TrainingWorker(_spec(tiny_bert, tmp_path / "v1", examples=400, epochs=50), timeout_s=3)
        with pytest.raises(TrainingFailed, match=r"training failed \(timeout\): training exceeded 3s"):
            worker.run()
        assert not (tmp_path / "v1").exists()
        assert _leftovers(tmp_path) == []

    def test_exception_in_training_is_reported_with_its_message(self, tmp_path: Path) -> None:
        not_a_model = tmp_path / "not-a-model"
        not_a_model.mkdir()
        spec = TrainingSpec(output_dir=tmp_path / "v1", train=synthetic_examples(LABELS, 5, seed=1),
                            base_model=not_a_model)
        with pytest.raises(TrainingFailed) as failure:
            TrainingWorker(spec, timeout_s=120).run()
        assert failure.value.reason == "error"
        assert failure.value.detail == (
            f"ModelLoadError: {not_a_model} is not a Hugging Face model directory (no config.json)"
        )
        assert _leftovers(tmp_path) == []

    def test_missing_model_directory_fails_before_starting_a_process(self, tmp_path: Path) -> None:
        spec = TrainingSpec(output_dir=tmp_path / "v1", train=synthetic_examples(LABELS, 5, seed=1),
                            base_model=tmp_path / "no-such-model")
        worker = TrainingWorker(spec, timeout_s=120)
        with pytest.raises(TrainingFailed, match=r"model directory .*no-such-model does not exist"):
            worker.run()
        assert worker.pid is None

    def test_cancel_fails_the_run_as_cancelled(self, tiny_bert: Path, tmp_path: Path) -> None:
        box: list[TrainingWorker] = []
        worker = TrainingWorker(_spec(tiny_bert, tmp_path / "v1", examples=400, epochs=50), timeout_s=300,
                                on_progress=lambda _: box[0].cancel())
        box.append(worker)
        with pytest.raises(TrainingFailed, match="cancelled"):
            worker.run()
        assert not (tmp_path / "v1").exists()

    def test_remove_partial_outputs_cleans_what_a_dead_parent_left(self, tmp_path: Path) -> None:
        (tmp_path / f".v7{PARTIAL_MARKER}abc").mkdir()
        (tmp_path / "v6").mkdir()
        removed = remove_partial_outputs(tmp_path)
        assert [p.name for p in removed] == [f".v7{PARTIAL_MARKER}abc"]
        assert [p.name for p in tmp_path.iterdir()] == ["v6"]
