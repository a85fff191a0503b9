"""The broker unreachable at start or going away mid-run: not-ready, retrying, nothing lost.

The embedded broker keeps its log in memory, so an outage is simulated with a
:class:`TcpProxy` between lifelong and the broker: the broker advertises the proxy's
port, so every connection lifelong makes (bootstrap and the metadata-advertised
address alike) goes through the proxy, and cutting the proxy cuts lifelong off while
the broker keeps running with its data. The test's own producer reaches the broker
during a cut through a second, never-cut proxy (HTTP CONNECT, kafka-python's
``proxy_url``), since the address the broker advertises is the cut one.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from kafka import KafkaProducer
from sqlalchemy import func, select
from sqlmodel import Session

from daemon.ingest.broker import EmbeddedBroker, create_topics, free_port
from daemon.runtime import Daemon
from storage.ingest_store import load_logs
from storage.models import Sample
from tests.conftest import RunningIngestor, produce, record, running_ingestor, settings_for, wait_for
from tests.integration._proxy import TcpProxy
from tests.reliability_log import record_case

#: How long the ingestor's 2 s TCP probe may take to notice a cut or a restore.
HEALTH_TIMEOUT_S = 10.0
#: How long kafka-python may take to reconnect after a restore (its reconnect backoff
#: doubles per failed attempt while the proxy is cut; our cuts last a few seconds).
RECOVERY_TIMEOUT_S = 45.0


@dataclass
class Outage:
    """A broker reachable only through ``proxy``, plus an uncuttable side door for the test's producer."""

    broker: EmbeddedBroker
    proxy: TcpProxy
    side_door: TcpProxy
    topic: str

    def produce_during_cut(self, texts: list[str]) -> int:
        """Produce one record per text straight to the broker, whether or not ``proxy`` is cut."""
        producer = KafkaProducer(
            bootstrap_servers=f"{self.broker.host}:{self.broker.port}", proxy_url=self.side_door.url, linger_ms=5
        )
        try:
            futures = [producer.send(self.topic, value=record(text, _label(text))) for text in texts]
            producer.flush()
            for future in futures:
                future.get(timeout=30)
        finally:
            producer.close()
        return len(futures)


def _label(text: str) -> str:
    return f"label{len(text) % 3}"


def _texts(prefix: str, n: int) -> list[str]:
    return [f"{prefix} utterance {i}" for i in range(n)]


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    real_port = free_port()
    with TcpProxy(("127.0.0.1", real_port)) as proxy, TcpProxy(("127.0.0.1", real_port), http_connect=True) as door:
        with EmbeddedBroker(port=real_port, advertised_port=proxy.port, log_path=tmp_path / "tansu.log") as broker:
            assert broker.bootstrap_servers == proxy.address
            topic = "test.outage"
            create_topics(broker.bootstrap_servers, [topic])
            yield Outage(broker=broker, proxy=proxy, side_door=door, topic=topic)


def _stored_texts(running: RunningIngestor) -> list[str]:
    with Session(running.engine) as session:
        return sorted(session.execute(select(Sample.text)).scalars().all())


def _sample_rows(running: RunningIngestor) -> int:
    with Session(running.engine) as session:
        return int(session.execute(select(func.count()).select_from(Sample)).scalar_one())


def _wait_rows(running: RunningIngestor, n: int) -> None:
    """Wait for ``n`` sample rows (not stored offsets: a recreated topic's offsets start again at 0)."""
    wait_for(lambda: _sample_rows(running) >= n, timeout_s=RECOVERY_TIMEOUT_S, what=f"{n} samples stored")


def _connected(running: RunningIngestor) -> bool:
    return running.ingestor.health.broker_connected and running.value("lifelong_ingest_broker_connected") == 1


def _disconnected(running: RunningIngestor) -> bool:
    return not running.ingestor.health.broker_connected and running.value("lifelong_ingest_broker_connected") == 0


class TestBrokerGoneMidRun:
    def test_run_reports_disconnected_then_stores_everything_once_after_restore(
        self, outage: Outage, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="daemon.ingest.consumer")
        before, during = _texts("before", 50), _texts("during", 30)
        produce(outage.broker.bootstrap_servers, outage.topic, [record(t, _label(t)) for t in before])
        settings = settings_for(outage.broker, outage.topic, sqlite_url, tmp_path)

        with running_ingestor(settings) as running:
            running.wait_stored(len(before))
            assert _connected(running)

            outage.proxy.cut()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((outage.proxy.host, outage.proxy.port), timeout=1).close()
            wait_for(lambda: _disconnected(running), timeout_s=HEALTH_TIMEOUT_S, what="broker reported unreachable")
            assert outage.produce_during_cut(during) == len(during)
            assert running.thread.is_alive()
            assert _sample_rows(running) == len(before)  # cut off: nothing new can arrive

            outage.proxy.restore()
            restored_at = time.monotonic()
            running.wait_stored(len(before) + len(during), timeout_s=RECOVERY_TIMEOUT_S)
            recovery_s = time.monotonic() - restored_at
            wait_for(lambda: _connected(running), timeout_s=HEALTH_TIMEOUT_S, what="broker reported reachable")

            assert _stored_texts(running) == sorted(before + during)
            assert _sample_rows(running) == len(before) + len(during)
            assert running.value("lifelong_ingest_records_consumed_total") == len(before) + len(during)
            assert running.value("lifelong_ingest_records_stored_total") == len(before) + len(during)
            assert running.value("lifelong_ingest_records_duplicate_total", {"kind": "position"}) == 0
            assert running.value("lifelong_ingest_records_duplicate_total", {"kind": "content"}) == 0

        messages = [r.getMessage() for r in caplog.records if r.name == "daemon.ingest.consumer"]
        assert any(m.startswith(f"broker unreachable: {outage.proxy.address}") for m in messages), messages
        # A first unanswered probe warns (a loaded host can miss one); an ERROR only once it persists.
        unreachable = [r for r in caplog.records if r.getMessage().startswith("broker unreachable")]
        assert unreachable[0].levelno == logging.WARNING, unreachable
        assert all(r.levelno == logging.ERROR for r in unreachable[1:]) and len(unreachable) <= 2, unreachable
        assert "broker reachable again" in messages
        record_case("broker connection cut mid-run", inflicted="a TCP proxy between lifelong and the broker refuses "
                    "connections while records are produced, then lets them through again",
                    checked="reported disconnected (metric, health), consumer alive, then every record stored once",
                    produced=len(before) + len(during), stored=len(before) + len(during), dead_lettered=0, lost=0,
                    recovery_s=round(recovery_s, 1))


class TestBrokerRestartedEmpty:
    def test_a_broker_that_comes_back_without_its_log_is_read_from_its_start_and_nothing_collides(
        self, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A restart of the memory-only embedded broker: the topic returns empty, under a new topic id.

        "Resumes" then means: ingestion goes on without a daemon restart, keeps every record
        stored before, and stores every record of the new log exactly once, including its first
        records (read from the old offsets, they would be skipped) and records whose offsets the
        old log had already used (taken as replays, they would be dropped). More records are
        produced after the restart than before, so both would happen here without the check.
        (A broker that keeps its log, as Kafka does, needs nothing: offsets simply resume.)
        """
        caplog.set_level(logging.INFO, logger="daemon.ingest.consumer")
        port, topic = free_port(), "test.restarted"
        before, after, later = _texts("before", 120), _texts("after", 200), _texts("later", 20)
        first = EmbeddedBroker(port=port, log_path=tmp_path / "tansu-1.log").start()
        try:
            create_topics(first.bootstrap_servers, [topic])
            produce(first.bootstrap_servers, topic, [record(t, _label(t)) for t in before])
            settings = settings_for(first, topic, sqlite_url, tmp_path)
            with running_ingestor(settings) as running:
                running.wait_stored(len(before))
                first.stop()
                wait_for(lambda: _disconnected(running), timeout_s=HEALTH_TIMEOUT_S, what="broker reported gone")
                with EmbeddedBroker(port=port, log_path=tmp_path / "tansu-2.log") as second:
                    create_topics(second.bootstrap_servers, [topic])
                    produce(second.bootstrap_servers, topic, [record(t, _label(t)) for t in after])
                    restarted_at = time.monotonic()
                    _wait_rows(running, len(before) + len(after))
                    recovery_s = time.monotonic() - restarted_at
                    produce(second.bootstrap_servers, topic, [record(t, _label(t)) for t in later])
                    _wait_rows(running, len(before) + len(after) + len(later))
                    wait_for(lambda: _connected(running), timeout_s=HEALTH_TIMEOUT_S, what="broker reported back")
                    assert _stored_texts(running) == sorted(before + after + later)
                    assert running.value("lifelong_ingest_topic_recreated_total", {"topic": topic}) == 1
                    assert running.value("lifelong_ingest_records_duplicate_total", {"kind": "position"}) == 0
                    assert running.value("lifelong_ingest_records_stored_total") == len(before + after + later)
                    assert _sample_rows(running) == len(before + after + later)  # none twice
                    with Session(running.engine) as session:
                        logs = load_logs(session, [topic])
        finally:
            first.stop()
        assert sum(log.next_offset for log in logs.values()) == len(after) + len(later)  # offsets of the new log
        assert sum(log.offset_base for log in logs.values()) == len(before)  # the old log's positions kept apart
        recreated = [r for r in caplog.records if "was recreated" in r.getMessage()]
        assert len(recreated) == 1 and recreated[0].levelno == logging.WARNING, recreated
        record_case("broker restarted without its log", inflicted="the memory-only embedded broker stopped and "
                    "started again on its port: the topic comes back empty under a new topic id, and more records "
                    "are produced to it than the old log held",
                    checked="no daemon restart; the recreated topic detected once (warning, metric), the new log "
                            "read from offset 0, every record of both logs stored once, no position collisions",
                    produced=len(before + after + later), stored=len(before + after + later), dead_lettered=0,
                    lost=0, recovery_s=round(recovery_s, 1))


class TestBrokerUnreachableAtStart:
    def test_run_keeps_retrying_until_the_broker_is_reachable(
        self, outage: Outage, sqlite_url: str, tmp_path: Path
    ) -> None:
        texts = _texts("early", 20)
        produce(outage.broker.bootstrap_servers, outage.topic, [record(t, _label(t)) for t in texts])
        outage.proxy.cut()
        settings = settings_for(outage.broker, outage.topic, sqlite_url, tmp_path)

        with running_ingestor(settings) as running:
            # Give it a few rounds of failing: it must neither die nor claim to be connected.
            for _ in range(3):
                running.stop.wait(1.0)
                assert running.thread.is_alive()
                assert _disconnected(running)
                assert _sample_rows(running) == 0

            outage.proxy.restore()
            running.wait_stored(len(texts), timeout_s=RECOVERY_TIMEOUT_S)
            wait_for(lambda: _connected(running), timeout_s=HEALTH_TIMEOUT_S, what="broker reported reachable")
            assert _stored_texts(running) == sorted(texts)
            assert running.value("lifelong_ingest_records_duplicate_total", {"kind": "position"}) == 0

    def test_failed_connection_attempts_leak_no_io_threads(
        self, outage: Outage, sqlite_url: str, tmp_path: Path
    ) -> None:
        outage.proxy.cut()
        settings = settings_for(outage.broker, outage.topic, sqlite_url, tmp_path,
                                kafka={"bootstrap_timeout_ms": 200})
        before = _kafka_io_threads()
        with running_ingestor(settings) as running:
            wait_for(lambda: running.ingestor.health.last_error is not None, what="a failed attempt")
            running.stop.wait(3.0)  # several more attempts fail meanwhile
            # kafka-python leaves its IO thread running when a consumer cannot bootstrap;
            # the ingestor must close it, or a long outage grows threads without bound.
            assert _kafka_io_threads() - before <= 1


def _kafka_io_threads() -> int:
    import threading

    return sum(1 for t in threading.enumerate() if t.name.startswith("kafka-io"))


class TestReadinessOverHttp:
    def test_readyz_follows_the_broker_while_healthz_stays_up(
        self, outage: Outage, sqlite_url: str, tmp_path: Path
    ) -> None:
        daemon = Daemon(settings_for(outage.broker, outage.topic, sqlite_url, tmp_path))
        try:
            daemon.start()
            assert daemon.api_url is not None
            with httpx.Client(base_url=daemon.api_url, timeout=5) as http:

                def ready_is(status: int, broker: bool) -> bool:
                    response = http.get("/readyz")
                    return response.status_code == status and response.json()["checks"]["broker"] is broker

                wait_for(lambda: ready_is(200, True), timeout_s=HEALTH_TIMEOUT_S, what="/readyz 200")
                assert http.get("/healthz").status_code == 200

                outage.proxy.cut()
                wait_for(lambda: ready_is(503, False), timeout_s=HEALTH_TIMEOUT_S, what="/readyz 503")
                cut = http.get("/readyz").json()
                assert cut["status"] == "not_ready"
                assert cut["checks"] == {"broker": False, "database": True, "ingest": True, "schema": True}
                assert http.get("/healthz").status_code == 200
                assert "lifelong_ingest_broker_connected 0.0" in http.get("/metrics").text.splitlines()

                outage.proxy.restore()
                wait_for(lambda: ready_is(200, True), timeout_s=HEALTH_TIMEOUT_S, what="/readyz 200 again")
                assert http.get("/readyz").json()["status"] == "ready"
                assert http.get("/healthz").status_code == 200
                assert "lifelong_ingest_broker_connected 1.0" in http.get("/metrics").text.splitlines()
        finally:
            daemon.stop()


def _refused_for_good(running: RunningIngestor, caplog: pytest.LogCaptureFixture, *errors: str) -> None:
    """What a security failure must look like: named once (not per retry) with the settings to fix,
    the auth metric set, the daemon up and not ready."""
    wait_for(lambda: "authentication or TLS failed" in (running.ingestor.health.last_error or ""),
             timeout_s=30, what="the failure to be named")
    time.sleep(5)  # several retries later
    health = running.ingestor.health
    assert running.thread.is_alive() and not health.ready
    assert any(error in (health.last_error or "") for error in errors), health.last_error
    assert "kafka.security_protocol" in (health.last_error or "") and "kafka.ssl_cafile" in (health.last_error or "")
    assert running.value("lifelong_ingest_broker_auth_failed") == 1
    assert running.value("lifelong_ingest_broker_connected") == 0
    ours = [r.getMessage() for r in caplog.records if r.name == "daemon.ingest.consumer" and r.levelno >= logging.WARNING]
    assert len([m for m in ours if "authentication or TLS failed" in m]) == 1, ours


class TestBrokerRefusesTheCredentials:
    def test_a_sasl_failure_is_one_clear_line_a_metric_and_not_ready(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The embedded broker speaks no SASL: the client's handshake is refused as a real broker refuses a
        wrong mechanism. Retrying cannot fix that, so it must be said once, plainly, not as a timeout loop."""
        caplog.set_level(logging.INFO)
        settings = settings_for(broker, topic, sqlite_url, tmp_path, kafka={
            "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "lifelong", "sasl_plain_password": "hunter2"})
        with running_ingestor(settings) as running:
            _refused_for_good(running, caplog, "UnsupportedSaslMechanismError")
        assert "hunter2" not in caplog.text
        record_case("Kafka SASL refused", inflicted="security_protocol SASL_PLAINTEXT against a broker that refuses "
                    "the mechanism", checked="daemon up and not ready, one warning naming the error and the "
                    "settings to fix, lifelong_ingest_broker_auth_failed = 1, no password in logs",
                    warnings_logged=1)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, Path]]:
    """A broker reachable only over TLS (a terminating proxy with a throwaway CA's certificate), and that CA."""
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    real_port = free_port()
    with TcpProxy(("127.0.0.1", real_port), tls=server) as proxy:
        with EmbeddedBroker(port=real_port, advertised_port=proxy.port, log_path=tmp_path / "tansu.log") as broker:
            create_topics(proxy.address, ["test.tls"], security_protocol="SSL", ssl_cafile=str(ca_file))
            yield broker, ca_file


class TestBrokerCertificateNotTrusted:
    def test_a_tls_failure_is_one_clear_line_a_metric_and_not_ready_and_the_right_ca_works(
        self, tls_broker: tuple[EmbeddedBroker, Path], sqlite_url: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The broker's certificate is signed by a CA the daemon was not given: every handshake fails the
        same way, so it is named once; given the CA, the same endpoint works (the failure was the trust)."""
        broker, ca_file = tls_broker
        caplog.set_level(logging.INFO)
        distrusting = settings_for(broker, "test.tls", sqlite_url, tmp_path, kafka={"security_protocol": "SSL"})
        with running_ingestor(distrusting) as running:
            _refused_for_good(running, caplog, "CERTIFICATE_VERIFY_FAILED", "SSLCertVerificationError")

        trusting = settings_for(broker, "test.tls", sqlite_url, tmp_path,
                                kafka={"security_protocol": "SSL", "ssl_cafile": str(ca_file)})
        texts = _texts("tls", 20)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, security_protocol="SSL",
                                 ssl_cafile=str(ca_file), linger_ms=5)
        try:
            for future in [producer.send("test.tls", value=record(t, _label(t))) for t in texts]:
                future.get(timeout=30)
        finally:
            producer.close()
        with running_ingestor(trusting) as running:
            wait_for(lambda: _stored_texts(running) == sorted(texts), timeout_s=60, what="records stored over TLS")
            assert running.ingestor.health.ready
            assert running.value("lifelong_ingest_broker_auth_failed") == 0
        record_case("Kafka TLS certificate not trusted", inflicted="security_protocol SSL against a TLS endpoint "
                    "whose certificate a CA the daemon was not given signed", checked="daemon up and not ready, one "
                    "warning naming the error and the settings to fix, lifelong_ingest_broker_auth_failed = 1; with "
                    "kafka.ssl_cafile set, the same endpoint stores every record", warnings_logged=1,
                    produced=len(texts), stored=len(texts), lost=0)
