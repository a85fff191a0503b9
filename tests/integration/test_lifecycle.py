"""Retrain cycles end to end: real ingest into SQLite, training in a worker, evaluation, gate, registry."""

from __future__ import annotations

import hashlib
import json
import random
import threading
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlmodel import Session

from daemon.config import KafkaSettings, Settings
from daemon.ingest.broker import EmbeddedBroker, create_topics, free_port
from daemon.serving.events import KafkaEventPublisher
from daemon.serving.predictor import Predictor
from daemon.training.lifecycle import ActionRefused, Lifecycle
from storage import registry
from storage.artifacts import MANIFEST_FILE, ArtifactStore, Manifest
from storage.engine import make_engine
from tests.conftest import produce, record, running_ingestor, settings_for
from tests.tiny_model import FILLER, build_tiny_bert, keywords, synthetic_examples

LABELS = ["c0", "c1", "c2", "c3", "c4", "c5"]
STAGE1, STAGE2 = LABELS[:3], LABELS[3:]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def _settings(broker: EmbeddedBroker, topic: str, url: str, tmp_path: Path, tiny_bert: Path,
              strategy: str = "replay") -> Settings:
    return settings_for(broker, topic, url, tmp_path, training={
        "base_model": str(tiny_bert),
        "strategy": {"name": strategy, "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
        "buffer": {"size": 60},
    })


def _ingest(broker: EmbeddedBroker, topic: str, settings: Settings, examples, *, already: int) -> int:
    sent = produce(broker.bootstrap_servers, topic, [record(e.text, e.label, id=f"s{already + i}")
                                                     for i, e in enumerate(examples)])
    with running_ingestor(settings) as running:
        running.wait_stored(already + sent)
    return already + sent


def _lifecycle(settings: Settings) -> Lifecycle:
    store = ArtifactStore(settings.data_dir / "models")
    engine = make_engine(settings.database_url)
    return Lifecycle(settings=settings, engine=engine, store=store, predictor=Predictor(store), publisher=None)


def _stage(labels, per_label: int, seed: int):
    return synthetic_examples(labels, per_label, seed=seed)


class TestFirstModel:
    def test_first_candidate_above_min_absolute_is_promoted_and_served(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path
    ) -> None:
        settings = _settings(broker, topic, sqlite_url, tmp_path, tiny_bert)
        _ingest(broker, topic, settings, _stage(STAGE1, 50, seed=1), already=0)
        lifecycle = _lifecycle(settings)
        run = lifecycle.run_cycle(trigger="manual")
        assert (run.status, run.outcome, run.candidate_version) == ("succeeded", "promoted", "v0001")
        assert [step["step"] for step in run.steps] == ["snapshot", "train", "evaluate", "gate", "publish", "decide"]
        assert lifecycle.predictor.version == "v0001"
        prediction = lifecycle.predictor.predict([f"w1 {keywords(label)[0]} w2" for label in STAGE1])
        assert prediction.top_labels == STAGE1
        assert all(label in (top, None) for label, top in zip(prediction.labels, prediction.top_labels, strict=True))
        with Session(lifecycle.engine) as session:
            assert registry.get_alias(session, registry.PRODUCTION) == "v0001"
            version = registry.get_version(session, "v0001")
            assert version is not None and version.labels == STAGE1
            assert version.checksum == lifecycle.store.verify("v0001").checksum
            decision = registry.latest_decisions(session, version="v0001")[0]
            assert decision.outcome == "promoted"
            assert [c["name"] for c in decision.checks] == ["eval_samples", "min_absolute", "abstain_rate"]
            # The version carries the calibration fitted on its held-out samples, and serves with it.
            calibration = version.metrics["calibration"]
            assert calibration["n_in_scope"] == version.metrics["candidate"]["all"]["n"]
            assert calibration["in_scope_abstain"] == settings.evaluation.abstain_in_scope
            served = lifecycle.predictor.serving
            assert served is not None and served.calibration is not None
            assert served.calibration.to_dict() == calibration

    def test_evaluation_scores_each_labels_newest_held_out_samples_up_to_the_cap(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path
    ) -> None:
        settings = _settings(broker, topic, sqlite_url, tmp_path, tiny_bert)
        settings = settings.model_copy(update={
            "ingest": settings.ingest.model_copy(update={"heldout_fraction": 0.5}),
            "evaluation": settings.evaluation.model_copy(update={"max_heldout_per_label": 10})})
        _ingest(broker, topic, settings, _stage(STAGE1, 50, seed=1), already=0)
        lifecycle = _lifecycle(settings)
        run = lifecycle.run_cycle(trigger="manual")
        assert run.outcome == "promoted"
        with Session(lifecycle.engine) as session:
            version = registry.get_version(session, "v0001")
            held = session.execute(text("SELECT count(*) FROM sample WHERE held_out")).scalar_one()
        assert held > 3 * 10  # more than the cap was held out ...
        assert version.metrics["candidate"]["all"]["n"] == 3 * 10  # ... and each label scored on its newest 10

    def test_no_new_data_skips_the_run(self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path,
                                       tiny_bert: Path) -> None:
        run = _lifecycle(_settings(broker, topic, sqlite_url, tmp_path, tiny_bert)).run_cycle(trigger="manual")
        assert (run.status, run.error_reason, run.candidate_version) == ("skipped", "no_new_data", None)


class TestRestart:
    def test_restart_records_a_run_left_running_as_interrupted(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path
    ) -> None:
        settings = _settings(broker, topic, sqlite_url, tmp_path, tiny_bert)
        first = _lifecycle(settings)
        run_id = first.begin_run(trigger="manual")  # the process "dies" here, before execute()
        second = _lifecycle(settings)
        assert second.take_over_training() == [run_id]
        assert second.sync_serving() is None
        with Session(second.engine) as session:
            run = registry.get_run(session, run_id)
        assert (run.status, run.error_reason) == ("failed", "interrupted")


class TestGateDecisions:
    def _first(self, broker, topic, url, tmp_path, tiny_bert, strategy="replay", per_label=50):
        settings = _settings(broker, topic, url, tmp_path, tiny_bert, strategy=strategy)
        count = _ingest(broker, topic, settings, _stage(STAGE1, per_label, seed=1), already=0)
        lifecycle = _lifecycle(settings)
        assert lifecycle.run_cycle(trigger="manual").outcome == "promoted"
        return settings, lifecycle, count

    def test_new_labels_learned_with_replay_are_promoted(self, broker, topic, sqlite_url, tmp_path, tiny_bert) -> None:
        settings, lifecycle, count = self._first(broker, topic, sqlite_url, tmp_path, tiny_bert)
        _ingest(broker, topic, settings, _stage(STAGE2, 50, seed=2), already=count)
        run = lifecycle.run_cycle(trigger="manual")
        assert (run.outcome, lifecycle.predictor.version) == ("promoted", "v0002")
        for labels in (STAGE1, STAGE2):
            probe = synthetic_examples(labels, 40, seed=11)
            got = lifecycle.predictor.predict([e.text for e in probe]).top_labels
            accuracy = sum(g == e.label for g, e in zip(got, probe, strict=True)) / len(probe)
            assert accuracy >= 0.6, (labels, accuracy)  # naive fine-tuning scores ~0 on the old labels
        with Session(lifecycle.engine) as session:
            assert registry.get_alias(session, registry.PREVIOUS) == "v0001"
            assert registry.get_version(session, "v0002").parent == "v0001"

    def test_candidate_that_forgets_old_labels_is_rejected_and_production_kept(
        self, broker, topic, sqlite_url, tmp_path, tiny_bert
    ) -> None:
        # naive fine-tuning on new labels only: it learns them and forgets the old ones.
        settings, lifecycle, count = self._first(broker, topic, sqlite_url, tmp_path, tiny_bert, strategy="naive")
        _ingest(broker, topic, settings, _stage(STAGE2, 50, seed=2), already=count)
        run = lifecycle.run_cycle(trigger="manual")
        assert (run.status, run.outcome) == ("succeeded", "rejected")
        assert lifecycle.predictor.version == "v0001"
        with Session(lifecycle.engine) as session:
            assert registry.get_alias(session, registry.PRODUCTION) == "v0001"
            decision = registry.latest_decisions(session, version="v0002")[0]
        failed = {c["name"] for c in decision.checks if not c["passed"]}
        assert decision.outcome == "rejected"
        assert "old_label_forgetting" in failed
        # Without force, an operator cannot promote what the gate rejected.
        with pytest.raises(ActionRefused, match=r"the gate did not approve v0002 \(reject: .*old_label_forgetting"):
            lifecycle.promote("v0002", actor="alice", reason="looks fine to me", force=False)
        assert lifecycle.predictor.version == "v0001"
        new_label_f1 = json.dumps(decision.checks)
        assert "old_labels" in new_label_f1

    def test_after_a_rejection_for_forgetting_the_next_retrain_replays_what_regressed_and_passes(
        self, broker, topic, sqlite_url, tmp_path, tiny_bert
    ) -> None:
        # A 3-sample buffer is too small to keep stage 1's labels: the first stage-2 candidate forgets them.
        settings = settings_for(broker, topic, sqlite_url, tmp_path, training={
            "base_model": str(tiny_bert), "buffer": {"size": 3},
            "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
        })
        count = _ingest(broker, topic, settings, _stage(STAGE1, 50, seed=1), already=0)
        lifecycle = _lifecycle(settings)
        assert lifecycle.run_cycle(trigger="manual").outcome == "promoted"
        _ingest(broker, topic, settings, _stage(STAGE2, 50, seed=2), already=count)
        rejected = lifecycle.run_cycle(trigger="manual")
        assert (rejected.outcome, rejected.replay_examples) == ("rejected", 3)
        with Session(lifecycle.engine) as session:
            decision = registry.latest_decisions(session, version="v0002")[0]
        failed = {c["name"] for c in decision.checks if not c["passed"]}
        # Six held-out samples per label: too few for per-label checks, so the set-level check catches it.
        assert "old_label_forgetting" in failed and not any(name.startswith("label_forgetting:") for name in failed)
        assert decision.reason.startswith("reject: ")
        assert "The new labels c3, c4, c5 stay unserved until a candidate passes." in decision.reason
        assert "the next retrain replays the stored training samples of every old label" in decision.reason
        assert "lifelong models promote v0002 --reason" in decision.reason

        # No new data: the next retrain starts from the same production model on the same
        # stage-2 samples, but replays the regressed labels' stored samples, and passes.
        retried = lifecycle.run_cycle(trigger="manual")
        snapshot = next(step for step in retried.steps if step["step"] == "snapshot")
        regressed = snapshot["regressed_labels"]
        assert regressed == STAGE1
        # 50 samples per label, some held out; buffer members are not replayed twice.
        assert 40 * len(regressed) <= snapshot["regressed_replay"] <= 50 * len(regressed)
        assert retried.replay_examples == 3 + snapshot["regressed_replay"]
        with Session(lifecycle.engine) as session:
            second = registry.latest_decisions(session, version="v0003")[0]
        assert (retried.outcome, lifecycle.predictor.version) == ("promoted", "v0003"), (regressed, snapshot, [
            c["detail"] for c in second.checks])

    def test_candidate_trained_on_label_flipped_data_is_rejected(
        self, broker, topic, sqlite_url, tmp_path, tiny_bert
    ) -> None:
        # Enough clean held-out samples (about 30) that the flips they suffer are evidence, not noise.
        settings, lifecycle, count = self._first(broker, topic, sqlite_url, tmp_path, tiny_bert, per_label=100)
        flipped = {"c0": "c1", "c1": "c2", "c2": "c0"}
        poisoned = [type(e)(e.sample_id, e.text, flipped[e.label]) for e in _stage(STAGE1, 80, seed=7)]
        _ingest(broker, topic, settings, poisoned, already=count)
        run = lifecycle.run_cycle(trigger="manual")
        assert run.outcome == "rejected"
        assert lifecycle.predictor.version == "v0001"
        with Session(lifecycle.engine) as session:
            decision = registry.latest_decisions(session, version="v0002")[0]
        failed = {c["name"] for c in decision.checks if not c["passed"]}
        # Held-out samples of the poisoned records are poisoned too, so the primary metric
        # can even rise; the flips on the clean held-out samples give the candidate away.
        assert "negative_flip_rate" in failed


def _grouped(groups: list[tuple[str, list[str], str, int]], *, seed: int) -> list[tuple[str, str, str]]:
    """(text, label, language) rows: per (label, keywords, language, count), filler words and one of the keywords."""
    rng = random.Random(seed)
    rows = []
    for label, words, language, count in groups:
        for _ in range(count):
            text = rng.sample(FILLER, rng.randint(3, 8)) + [rng.choice(words)]
            rng.shuffle(text)
            rows.append((" ".join(text), label, language))
    rng.shuffle(rows)
    return rows


class TestGroupSlices:
    """``gate.slices``: one customer group made worse while the average improves."""

    def _settings(self, broker, topic, url, tmp_path, tiny_bert, **gate):
        return settings_for(broker, topic, url, tmp_path, training={
            "base_model": str(tiny_bert),
            "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
            "buffer": {"size": 400},  # all of stage 1: what changes is what the new labels take, not forgetting
        }, ingest={"heldout_fraction": 0.3}, gate=gate)

    def _send(self, broker, topic, settings, rows, *, already: int) -> int:
        sent = produce(broker.bootstrap_servers, topic, [
            record(text, label, id=f"g{already + i}", meta={"language": language})
            for i, (text, label, language) in enumerate(rows)])
        with running_ingestor(settings) as running:
            running.wait_stored(already + sent)
        return already + sent

    def test_a_candidate_that_improves_overall_but_drops_one_group_is_rejected_naming_it(
        self, broker, topic, sqlite_url, tmp_path, tiny_bert
    ) -> None:
        # Only the slice check may stop it: the other forgetting limits are set wide open.
        settings = self._settings(broker, topic, sqlite_url, tmp_path, tiny_bert, slices=["meta.language"],
                                  slice_min_support=20, max_negative_flip_rate=0.5, max_label_forgetting=0.9,
                                  max_forgetting=0.5)
        stage1 = [(label, keywords(label)[:2], "en", 60) for label in STAGE1] + \
                 [(label, keywords(label)[2:], "de", 100) for label in STAGE1]
        count = self._send(broker, topic, settings, _grouped(stage1, seed=1), already=0)
        lifecycle = _lifecycle(settings)
        assert lifecycle.run_cycle(trigger="manual").outcome == "promoted"
        # Two new labels; c3 is what German speakers' c0 requests look like: the candidate
        # learns it and with it answers c3 to the German c0 texts production got right.
        stage2 = [("c3", keywords("c0")[2:], "de", 150), ("c4", keywords("c4"), "en", 60)]
        self._send(broker, topic, settings, _grouped(stage2, seed=2), already=count)
        run = lifecycle.run_cycle(trigger="manual")
        with Session(lifecycle.engine) as session:
            decision = registry.latest_decisions(session, version="v0002")[0]
        assert run.outcome == "rejected", "\n".join(c["name"] + ": " + c["detail"] for c in decision.checks)
        assert lifecycle.predictor.version == "v0001"
        with Session(lifecycle.engine) as session:
            rows = registry.version_evaluations(session, "v0002")
        checks = {c["name"]: c for c in decision.checks}
        assert not checks["slice_forgetting:meta.language=de"]["passed"], checks
        assert checks["slice_forgetting:meta.language=en"]["passed"], checks["slice_forgetting:meta.language=en"]
        assert checks["primary_improvement"]["passed"] and checks["slice_coverage:meta.language"]["passed"]
        assert "meta.language='de'" in checks["slice_forgetting:meta.language=de"]["detail"]
        sliced = {row.label: row for row in rows if row.eval_set == "slice:language"}
        assert set(sliced) == {"en", "de"} and all(row.metric == "accuracy" for row in sliced.values())
        gauge = lifecycle.metrics.registry.get_sample_value
        de = {"slice": "meta.language", "group": "de"}
        assert gauge("lifelong_evaluation_slice_accuracy_ratio", {"model": "candidate", **de}) == \
            pytest.approx(sliced["de"].value)
        with Session(lifecycle.engine) as session:
            [production_de] = [row for row in registry.version_evaluations(session, "v0001")
                               if row.run_id == run.id and row.eval_set == "slice:language" and row.label == "de"]
        assert gauge("lifelong_evaluation_slice_accuracy_ratio", {"model": "production", **de}) == \
            pytest.approx(production_de.value)

    def test_a_slice_key_the_records_lack_keeps_the_first_model_out_naming_the_key(
        self, broker, topic, sqlite_url, tmp_path, tiny_bert
    ) -> None:
        settings = self._settings(broker, topic, sqlite_url, tmp_path, tiny_bert, slices=["meta.channel"])
        self._send(broker, topic, settings, _grouped([(label, keywords(label), "en", 40) for label in STAGE1],
                                                     seed=3), already=0)
        lifecycle = _lifecycle(settings)
        assert lifecycle.run_cycle(trigger="manual").outcome == "rejected"
        with Session(lifecycle.engine) as session:
            decision = registry.latest_decisions(session, version="v0001")[0]
        failed = [c for c in decision.checks if not c["passed"]]
        assert [c["name"] for c in failed] == ["slice_coverage:meta.channel"]
        assert "lack meta key 'channel'" in failed[0]["detail"]


class TestOperatorActions:
    def test_rollback_force_promote_and_tamper(self, broker, topic, sqlite_url, tmp_path, tiny_bert) -> None:
        settings = _settings(broker, topic, sqlite_url, tmp_path, tiny_bert)
        count = _ingest(broker, topic, settings, _stage(STAGE1, 50, seed=1), already=0)
        lifecycle = _lifecycle(settings)
        assert lifecycle.run_cycle(trigger="manual").outcome == "promoted"
        _ingest(broker, topic, settings, _stage(STAGE2, 50, seed=2), already=count)
        assert lifecycle.run_cycle(trigger="manual").outcome == "promoted"

        record_ = lifecycle.rollback(actor="alice", reason="bad feedback")
        assert (record_.candidate, record_.production_before, record_.outcome) == ("v0001", "v0002", "rolled_back")
        assert lifecycle.predictor.version == "v0001"
        with pytest.raises(ActionRefused, match="no previous version to roll back to"):
            lifecycle.rollback(actor="alice", reason="again")

        forced = lifecycle.promote("v0002", actor="bob", reason="feedback was wrong")
        assert (forced.outcome, forced.forced, forced.actor) == ("forced", True, "bob")
        assert lifecycle.predictor.version == "v0002"

        with pytest.raises(ActionRefused, match="version 'v0099' does not exist"):
            lifecycle.promote("v0099", actor="bob", reason=None)

        weights = lifecycle.store.path_for("v0001") / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
        with pytest.raises(ActionRefused, match="v0001.*model.safetensors"):
            lifecycle.promote("v0001", actor="bob", reason="tampered")
        assert lifecycle.predictor.version == "v0002"
        with Session(lifecycle.engine) as session:
            assert registry.get_alias(session, registry.PRODUCTION) == "v0002"


def _rewrite_consistently(store: ArtifactStore, version: str) -> None:
    """Alter the weights and rewrite manifest.json to match them, as an attacker with disk access would."""
    directory = store.path_for(version)
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    manifest = store.read_manifest(version)
    files = {**manifest.files, "model.safetensors": hashlib.sha256(bytes(data)).hexdigest()}
    forged = Manifest.build(version, files, lineage=manifest.lineage, metrics=manifest.metrics)
    (directory / MANIFEST_FILE).write_text(json.dumps(forged.to_dict()), encoding="utf-8")
    store.verify(version)  # consistent with itself: only the registry's checksum can tell


class TestRegistryChecksum:
    """A manifest rewritten to match altered files passes the manifest check; the database row does not."""

    def test_a_forged_version_is_neither_served_nor_promoted_nor_trained_from(
            self, broker, topic, sqlite_url, tmp_path, tiny_bert) -> None:
        settings = _settings(broker, topic, sqlite_url, tmp_path, tiny_bert)
        count = _ingest(broker, topic, settings, _stage(STAGE1, 50, seed=1), already=0)
        lifecycle = _lifecycle(settings)
        assert lifecycle.run_cycle(trigger="manual").outcome == "promoted"
        count = _ingest(broker, topic, settings, _stage(STAGE2, 50, seed=2), already=count)
        assert lifecycle.run_cycle(trigger="manual").outcome == "promoted"

        _rewrite_consistently(lifecycle.store, "v0001")
        with pytest.raises(ActionRefused, match="v0001.*is not the expected"):
            lifecycle.rollback(actor="alice", reason="forged previous")
        with pytest.raises(ActionRefused, match="v0001.*is not the expected"):
            lifecycle.promote("v0001", actor="alice", reason="forged")
        assert lifecycle.predictor.version == "v0002"

        _rewrite_consistently(lifecycle.store, "v0002")
        restarted = _lifecycle(settings)
        assert restarted.sync_serving() is None  # a restart does not serve the forged production
        _ingest(broker, topic, settings, _stage(STAGE1, 10, seed=3), already=count)
        run = restarted.run_cycle(trigger="manual")
        assert (run.status, run.error_reason, run.candidate_version) == ("failed", "parent_unverified", None)
        assert "v0002" in run.error and "is not the expected" in run.error
        with Session(restarted.engine) as session:
            assert registry.get_alias(session, registry.PRODUCTION) == "v0002"
            assert [v.name for v in registry.list_versions(session)] == ["v0001", "v0002"]


class TestPromotionEvents:
    """Events go to the real broker; production moves first and never waits for them."""

    @staticmethod
    def _two_versions(broker, topic, url, tmp_path, tiny_bert) -> Settings:
        settings = _settings(broker, topic, url, tmp_path, tiny_bert)
        count = _ingest(broker, topic, settings, _stage(STAGE1, 50, seed=1), already=0)
        first = _lifecycle(settings)
        assert first.run_cycle(trigger="manual").outcome == "promoted"
        _ingest(broker, topic, settings, _stage(STAGE2, 50, seed=2), already=count)
        assert first.run_cycle(trigger="manual").outcome == "promoted"  # v0002 production, v0001 previous
        return settings

    @staticmethod
    def _with_publisher(settings: Settings, kafka: KafkaSettings, timeout_s: float) -> Lifecycle:
        store = ArtifactStore(settings.data_dir / "models")
        lifecycle = Lifecycle(settings=settings, engine=make_engine(settings.database_url), store=store,
                              predictor=Predictor(store), publisher=KafkaEventPublisher(kafka, timeout_s=timeout_s))
        lifecycle.sync_serving()
        return lifecycle

    def test_a_broker_outage_delays_the_event_not_the_rollback(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path
    ) -> None:
        settings = self._two_versions(broker, topic, sqlite_url, tmp_path, tiny_bert)
        gone = settings.kafka.model_copy(update={"bootstrap_servers": [f"127.0.0.1:{free_port()}"]})
        lifecycle = self._with_publisher(settings, gone, timeout_s=3.0)
        record_ = lifecycle.rollback(actor="alice", reason="broker is down")
        # Rolled back and serving while the event is still trying to reach the broker.
        assert record_.outcome == "rolled_back" and lifecycle.predictor.version == "v0001"
        assert lifecycle.events is not None and not lifecycle.events.join(0)
        with Session(lifecycle.engine) as session:
            assert registry.get_alias(session, registry.PRODUCTION) == "v0001"
        assert lifecycle.events.join(30)
        assert lifecycle.metrics.registry.get_sample_value("lifelong_promotion_events_failed_total") == 1
        lifecycle.close()

    def test_racing_operator_actions_are_announced_in_the_order_production_moved(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path
    ) -> None:
        settings = self._two_versions(broker, topic, sqlite_url, tmp_path, tiny_bert)
        kafka = settings.kafka.model_copy(update={"topic_prefix": f"race-{topic}"})  # a topic of its own
        promotions = kafka.promotions_topic
        create_topics(broker.bootstrap_servers, [promotions])
        lifecycle = self._with_publisher(settings, kafka, timeout_s=10.0)
        with Session(lifecycle.engine) as session:
            before = {d.id for d in registry.latest_decisions(session, limit=100)}

        def act(action: str) -> None:
            try:
                if action == "rollback":
                    lifecycle.rollback(actor="alice", reason="race")
                else:
                    lifecycle.promote(action, actor="bob", reason="race", force=True)
            except ActionRefused:
                pass  # e.g. a second rollback in a row, or promoting what is already production

        threads = [threading.Thread(target=act, args=(a,)) for a in ("rollback", "v0002", "rollback", "v0001", "v0002")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert lifecycle.events is not None and lifecycle.events.join(30)
        with Session(lifecycle.engine) as session:
            moved = sorted((d for d in registry.latest_decisions(session, limit=100) if d.id not in before),
                           key=lambda d: d.id)
        assert moved, "no action succeeded"

        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False,
                                 consumer_timeout_ms=3000)
        partition = TopicPartition(promotions, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        events = [json.loads(message.value) for message in consumer]
        consumer.close()
        assert [(e["version"], e["outcome"], e["previous_production"]) for e in events] == [
            (d.candidate, d.outcome, d.production_before) for d in moved]
        with Session(lifecycle.engine) as session:  # and what is served is what the database says
            assert lifecycle.predictor.version == registry.get_alias(session, registry.PRODUCTION)
        lifecycle.close()
