"""Label administration through a real daemon (broker, SQLite file, HTTP, training worker): rename,
merge and retire change the database and production's head in one step, keep the other labels'
answers, follow producers that still send old names, and refuse what cannot apply whole."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlmodel import Session

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from storage.models import Label, LabelChange, Sample
from storage.split import content_hash
from tests.conftest import produce, record, settings_for, wait_for, wait_run
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2", "c3"]
TOKEN = "labels-token"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def _answers(client: httpx.Client, texts: list[str]) -> list[str | None]:
    body = client.post("/v1/predict", json={"texts": texts}).json()
    return [p["label"] if p["label"] is not None else (max(p["probabilities"], key=p["probabilities"].get))
            for p in body["predictions"]]


def test_rename_merge_retire_follow_through_storage_serving_and_training(
        broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path) -> None:
    settings = settings_for(broker, topic, sqlite_url, tmp_path, api={"port": 0, "token": TOKEN},
                            serving={"abstain": False},
                            training={"base_model": str(tiny_bert), "strategy": {"name": "slda", "max_length": 24}})
    daemon = Daemon(settings).start()
    engine = create_engine(sqlite_url)
    try:
        with httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            examples = synthetic_examples(LABELS, 40, seed=1)
            produce(broker.bootstrap_servers, topic, [record(e.text, e.label) for e in examples])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 160, what="training data")
            first = wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])
            assert first["outcome"] == "promoted", first
            probe = synthetic_examples(LABELS, 10, seed=9)
            texts = [e.text for e in probe]
            before = _answers(client, texts)
            listed = {label["name"]: label for label in client.get("/v1/labels").json()}
            assert listed["c0"]["samples"] == 40 and listed["c0"]["f1"] is not None

            # Refused whole: renaming onto an existing label, an unknown label, merging into a source.
            for path, body, status, words in (
                    ("/v1/labels/rename", {"label": "c0", "to": "c1"}, 409, "merge"),
                    ("/v1/labels/rename", {"label": "nope", "to": "x"}, 404, "nope"),
                    ("/v1/labels/merge", {"labels": ["c1", "c2"], "into": "c2"}, 409, "source"),
                    ("/v1/labels/retire", {"label": ""}, 422, "label")):
                answer = client.post(path, json=body)
                assert answer.status_code == status and words in answer.text, (body, answer.text)
            with Session(engine) as session:
                assert session.execute(select(LabelChange)).first() is None

            # Rename: the next answer says the new name; every answer is otherwise the same.
            renamed = client.post("/v1/labels/rename", json={"label": "c0", "to": "zero", "actor": "ops",
                                                             "reason": "naming"}).json()
            assert renamed["production"] != first["candidate_version"]
            assert _answers(client, texts) == [{"c0": "zero"}.get(a, a) for a in before]
            # A producer still sending "c0" stores under "zero", recognised as already stored.
            produce(broker.bootstrap_servers, topic, [record(examples[0].text, "c0") if examples[0].label == "c0"
                                                      else record("w1 c0k0 w2 fresh", "c0")])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] in (160, 161), what="old name")
            with Session(engine) as session:
                names = {label.name: label for label in session.execute(select(Label)).scalars()}
                assert names["c0"].alias_of == names["zero"].id
                zero = session.execute(select(Sample).where(Sample.label_id == names["zero"].id)).scalars().all()
                assert all(s.content_hash == content_hash(s.text, "zero") for s in zero)

            # Retire: c3 is never answered again; answers that were not c3 stay.
            client.post("/v1/labels/retire", json={"label": "c3", "reason": "product gone"}).raise_for_status()
            now = _answers(client, texts)
            assert "c3" not in now
            assert all(n == {"c0": "zero"}.get(b, b) for n, b in zip(now, before, strict=True) if b != "c3")

            # Merge: c1 and c2 answer as c12.
            client.post("/v1/labels/merge", json={"labels": ["c1", "c2"], "into": "c12"}).raise_for_status()
            pair = [i for i, e in enumerate(probe) if e.label in ("c1", "c2")]
            merged = _answers(client, [texts[i] for i in pair])
            # The refit is the LDA of the merged labelling (tests/unit/learners/test_relabel.py):
            # about as many of their texts answer c12 as answered c1 or c2 before.
            assert merged.count("c12") >= sum(before[i] in ("c1", "c2") for i in pair) - 2
            listed = {label["name"]: label for label in client.get("/v1/labels").json()}
            assert (listed["c12"]["samples"], listed["zero"]["aliases"], listed["c3"]["retired"]) == \
                (80, ["c0"], True)

            # The next candidate trains on from that head: new data of the current names only.
            produce(broker.bootstrap_servers, topic,
                    [record(e.text, {"c0": "zero", "c1": "c12", "c2": "c12"}.get(e.label, e.label))
                     for e in synthetic_examples(LABELS, 5, seed=4)])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] >= 175, what="more data")
            run = wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])
            assert run["status"] == "succeeded", run
            shown = client.get(f"/v1/models/{run['candidate_version']}").json()
            assert sorted(shown["label_names"]) == ["c12", "zero"]
            with Session(engine) as session:
                kinds = [c.kind for c in session.execute(select(LabelChange).order_by(LabelChange.id)).scalars()]
            assert kinds == ["rename", "retire", "merge"]
            decisions = client.get(f"/v1/models/{renamed['production']}").json()["decisions"]
            assert decisions[0]["outcome"] == "relabeled" and decisions[0]["actor"] == "ops"
    finally:
        engine.dispose()
        daemon.stop()
