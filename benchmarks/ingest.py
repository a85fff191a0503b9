"""Ingest throughput and memory benchmark: lifelong versus a bare Kafka consumer.

Why this exists: ingestion must keep up with the stream it learns from. The project's
targets are that lifelong stores records into SQLite at no less than half the rate at
which a bare kafka-python consumer merely reads them (ratio >= 0.5), and that the
ingest process's resident memory grows by less than 50 MB between 100k and 1M
records ingested (no per-record state may accumulate). Both are easy to lose
silently in a refactor, so this script measures them the same way every time.

One run does, against a fresh embedded (tansu, in-memory) broker:

1. produce ``--records`` JSON records (~100-byte unique texts, 50 labels) and report
   the produce rate;
2. for each of ``--rounds`` rounds, read them all with a bare ``KafkaConsumer`` and
   then ingest them all with lifelong's :class:`daemon.ingest.consumer.Ingestor` into a fresh
   SQLite file; the two run back to back so each round's ratio compares like with
   like on a noisy machine, and the median ratio is reported;
3. unless ``--memory-records 0``: produce that many records to a second topic and
   ingest them in a child process, sampling its RSS every ``--memory-sample-every``
   stored records; growth is RSS at the end minus RSS at the first sample.

Run from the repository root::

    python -m benchmarks.ingest                      # defaults
    python -m benchmarks.ingest --records 50000 --memory-records 0   # quick look
    python -m benchmarks.ingest --memory-records 0 --profile /tmp/ingest.pstats   # + cProfile
    python -m benchmarks.ingest --memory-records 0 --variant 'keep:relabeled_text="keep"'   # + another config
    python -m benchmarks.ingest --memory-records 0 --texts ../shared/datasets/clinc150/data_full.json \\
        --variant 'redact:redact_pii="all"'    # redaction's cost on real utterances
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import kafka.record.util
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import text as sql_text

from benchmarks.datasets import all_texts
from daemon.config import ConfigError, KafkaSettings, load_settings
from daemon.ingest.broker import EmbeddedBroker, create_topics
from daemon.ingest.consumer import Ingestor
from daemon.metrics import Metrics
from storage import make_engine, upgrade

logger = logging.getLogger("benchmarks.ingest")

RATIO_TARGET = 0.5
MEMORY_GROWTH_TARGET_MB = 50.0
_LABEL_COUNT = 50
_WATCH_INTERVAL_S = 0.02
_MB = 1024 * 1024

_WORDS = (
    "please book a flight to the city tomorrow morning and check my account balance when "
    "you can cancel order refund payment delivery status weather alarm reminder music play "
    "song restaurant table reservation hotel room taxi ride transfer money card lost stolen "
    "password reset update address schedule meeting calendar invite email send message"
).split()


# ---------------------------------------------------------------------------- data


class RecordFactory:
    """Deterministic ``{"text", "label", "id"}`` values: unique ~100-byte texts over 50 labels.

    With ``texts`` (real utterances, e.g. CLINC150's) the phrases are those and the unique
    suffix is spelled in letters, so the texts carry no number that redaction would inspect.
    """

    def __init__(self, seed: int = 1234, phrases: int = 4096, texts: list[str] | None = None) -> None:
        rng = random.Random(seed)
        self._phrases: list[str] = []
        self._spelled = texts is not None
        if texts is not None:
            self._phrases = list(texts)
        for _ in range(phrases if texts is None else 0):
            words: list[str] = []
            while sum(len(w) + 1 for w in words) < 80:
                words.append(rng.choice(_WORDS))
            self._phrases.append(" ".join(words))
        self._labels = [f"intent_{n:02d}" for n in range(_LABEL_COUNT)]

    def value(self, index: int) -> bytes:
        phrase = self._phrases[index % len(self._phrases)]
        label = self._labels[(index * 7 + index // len(self._phrases)) % _LABEL_COUNT]
        suffix = _spelled(index) if self._spelled else f"#{index}"
        record = {"text": f"{phrase} {suffix}", "label": label, "id": f"bench-{index}"}
        return json.dumps(record).encode("utf-8")


def _spelled(index: int) -> str:
    """``index`` in base 26 as letters: unique, and no digit in it."""
    letters = ""
    while True:
        index, rest = divmod(index, 26)
        letters = chr(ord("a") + rest) + letters
        if not index:
            return letters


def produce(bootstrap: str, topic: str, start: int, count: int, factory: RecordFactory) -> float:
    """Send records ``start .. start+count-1`` to ``topic``; returns seconds until all are acknowledged."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="bench-producer",
        linger_ms=50,
        batch_size=1 * _MB,
        max_request_size=16 * _MB,
        metrics_enabled=False,
    )
    started = time.perf_counter()
    failed = 0
    try:
        pending: list[Any] = []
        for index in range(start, start + count):
            pending.append(producer.send(topic, value=factory.value(index)))
            if len(pending) >= 100_000:  # kafka-python 3 has no buffer_memory bound; keep the backlog small
                failed += _settle(producer, pending)
        failed += _settle(producer, pending)
        elapsed = time.perf_counter() - started
    finally:
        producer.close(timeout=10)
    if failed:
        raise RuntimeError(f"producing to {topic}: {failed} of {count} records were not acknowledged")
    return elapsed


def _settle(producer: KafkaProducer, pending: list[Any]) -> int:
    """Flush, then count the sends that failed. (The topic's end offset cannot be the check:
    tansu's ListOffsets(latest) answers the last batch's base offset, not the high watermark.)"""
    producer.flush(timeout=300)
    failed = sum(1 for future in pending if not future.succeeded())
    pending.clear()
    return failed


def _partitions(consumer: KafkaConsumer, topic: str, timeout_s: float = 30.0) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} has no partitions after {timeout_s}s")
        time.sleep(0.1)


# ---------------------------------------------------------------------------- readers


@dataclass
class ReadResult:
    """One full read of the topic: wall time from start, and from the first record on."""

    records: int
    seconds: float
    first_record_s: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def rate_after_first(self) -> float:
        span = self.seconds - self.first_record_s
        return self.records / span if span > 0 else float("nan")


def bare_consume(bootstrap: str, topic: str, expected: int, kafka: KafkaSettings, timeout_s: float) -> ReadResult:
    """Read every record of ``topic`` with a plain consumer doing nothing with them."""
    started = time.perf_counter()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="bench-bare",
        group_id=None,
        enable_auto_commit=False,
        value_deserializer=None,
        key_deserializer=None,
        max_poll_records=2000,
        # Same fetch sizes as lifelong, so the ratio measures lifelong, not fetch tuning.
        max_partition_fetch_bytes=kafka.max_partition_fetch_bytes,
        fetch_max_bytes=kafka.fetch_max_bytes,
    )
    try:
        partitions = _partitions(consumer, topic)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        count = 0
        first: float | None = None
        last_progress = started
        while count < expected:
            polled = consumer.poll(timeout_ms=500, max_records=2000)
            now = time.perf_counter()
            for records in polled.values():
                if records and first is None:
                    first = now
                count += len(records)
            if polled:
                last_progress = now
            elif now - last_progress > timeout_s:
                raise RuntimeError(f"bare consumer stalled at {count}/{expected} records for {timeout_s}s")
        finished = time.perf_counter()
    finally:
        consumer.close(autocommit=False)
    if count != expected:
        raise RuntimeError(f"bare consumer read {count} records, the topic holds {expected}")
    return ReadResult(count, finished - started, (first or finished) - started)


def _metric(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def lifelong_ingest(
    bootstrap: str,
    topic: str,
    expected: int,
    data_dir: Path,
    timeout_s: float,
    on_progress: Callable[[int], None] | None = None,
    profile_path: Path | None = None,
    ingest: dict[str, Any] | None = None,
) -> ReadResult:
    """Ingest every record of ``topic`` into a fresh SQLite file with lifelong's Ingestor."""
    # A fresh group id each time: with no stored offset lifelong starts from the group's
    # Kafka-committed offset, which an earlier round would have left at the end of the topic.
    group = f"bench-{uuid.uuid4().hex[:12]}"
    kafka = {"bootstrap_servers": [bootstrap], "topics": [topic], "group_id": group}
    settings = load_settings(data_dir=data_dir, kafka=kafka, ingest=ingest or {})
    engine = make_engine(settings.database_url)
    upgrade(engine)
    metrics = Metrics()
    ingestor = Ingestor(kafka=settings.kafka, ingest=settings.ingest, engine=engine, metrics=metrics)
    stop = threading.Event()
    profiler = cProfile.Profile() if profile_path else None

    def run() -> None:
        if profiler is None:
            ingestor.run(stop)
            return
        profiler.enable()  # cProfile sees only the thread that enables it
        try:
            ingestor.run(stop)
        finally:
            profiler.disable()

    thread = threading.Thread(target=run, name="lifelong-ingest", daemon=True)
    started = time.perf_counter()
    thread.start()
    first: float | None = None
    last_stored, last_progress = -1, started
    try:
        while True:
            stored = int(_metric(metrics, "lifelong_ingest_records_stored_total"))
            now = time.perf_counter()
            if stored != last_stored:
                last_stored, last_progress = stored, now
            if first is None and _metric(metrics, "lifelong_ingest_records_consumed_total") > 0:
                first = time.perf_counter()
            if on_progress is not None:
                on_progress(stored)
            if stored >= expected:
                break
            if not thread.is_alive():
                raise RuntimeError(f"ingest thread died after storing {stored}/{expected} records")
            if now - last_progress > timeout_s:
                raise RuntimeError(f"lifelong stalled at {stored}/{expected} records stored for {timeout_s}s")
            time.sleep(_WATCH_INTERVAL_S)
        finished = time.perf_counter()
    finally:
        stop.set()
        thread.join(timeout=60)
    if profiler is not None and profile_path is not None:
        profiler.dump_stats(str(profile_path))
        logger.info("profile of the ingest thread written to %s", profile_path)
    _check_ingested(metrics, engine, expected)
    engine.dispose()
    return ReadResult(stored, finished - started, (first or finished) - started)


def _check_ingested(metrics: Metrics, engine: Any, expected: int) -> None:
    """A benchmark that silently dropped or dead-lettered records would measure nothing."""
    dead = sum(
        s.value
        for family in metrics.registry.collect()
        if family.name == "lifelong_ingest_dead_letters"
        for s in family.samples
        if s.name.endswith("_total")
    )
    with engine.connect() as connection:
        rows = connection.execute(sql_text("SELECT count(*) FROM sample")).scalar_one()
    if dead or rows != expected:
        raise RuntimeError(f"ingest is wrong: {rows} samples stored (expected {expected}), {dead} dead letters")


# ---------------------------------------------------------------------------- memory phase


def _proc_status_mb(key: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in MB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _rss_mb() -> float:
    return _proc_status_mb("VmRSS")


def _peak_rss_mb() -> float:
    return _proc_status_mb("VmHWM")


def crc32c_implementation() -> str:
    """Which CRC-32C kafka-python uses; it dominates the bare consumer's cost, so it moves the ratio."""
    native = getattr(kafka.record.util, "crc32c_c", None)
    return "C (crc32c package)" if native is not None else "pure Python (kafka.record._crc32c)"


def memory_worker(bootstrap: str, topic: str, records: int, sample_every: int, timeout_s: float) -> dict[str, Any]:
    """Child-process side of the memory phase: ingest ``records``, sampling RSS as it goes."""
    samples: list[tuple[int, float]] = []
    next_mark = sample_every

    def on_progress(stored: int) -> None:
        nonlocal next_mark
        if stored >= next_mark or stored >= records:  # the last call comes before ingest stops
            samples.append((stored, _rss_mb()))
            logger.info("memory: %s stored, RSS %.1f MB", f"{stored:,}", samples[-1][1])
            next_mark = (stored // sample_every + 1) * sample_every

    before = _rss_mb()
    with tempfile.TemporaryDirectory(prefix="lifelong-bench-mem-") as data_dir:
        result = lifelong_ingest(bootstrap, topic, records, Path(data_dir), timeout_s, on_progress)
        stopped_rss = _rss_mb()
        db_mb = sum(p.stat().st_size for p in Path(data_dir).iterdir()) / _MB
    if not samples:
        raise RuntimeError(f"--memory-records {records} is below --memory-sample-every {sample_every}")
    return {
        "records": records,
        "seconds": result.seconds,
        "rate": result.rate,
        "rss_before_ingest_mb": before,
        "rss_first_sample_mb": samples[0][1],
        "first_sample_at": samples[0][0],
        "rss_end_mb": samples[-1][1],
        "rss_growth_mb": samples[-1][1] - samples[0][1],
        # RSS swings by ~15 MB between samples as malloc returns memory; the worst sample
        # above the first is judged too, so a lucky low last sample cannot hide growth.
        "rss_worst_growth_mb": max(rss for _, rss in samples) - samples[0][1],
        "rss_after_stop_mb": stopped_rss,
        "rss_peak_mb": _peak_rss_mb(),
        "database_mb": db_mb,
        "samples": samples,
    }


def run_memory_phase(args: argparse.Namespace, bootstrap: str, factory: RecordFactory) -> dict[str, Any]:
    topic = "bench-memory"
    create_topics(bootstrap, [topic], partitions=args.partitions)
    logger.info("memory phase: producing %s records", f"{args.memory_records:,}")
    produce(bootstrap, topic, args.records, args.memory_records, factory)
    command = [
        sys.executable, str(Path(__file__).resolve()), "--memory-worker",
        "--bootstrap", bootstrap, "--topic", topic,
        "--memory-records", str(args.memory_records),
        "--memory-sample-every", str(args.memory_sample_every),
        "--timeout", str(args.timeout), "--log-level", args.log_level,
    ]  # fmt: skip
    logger.info("memory phase: ingesting in a child process")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker failed with status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- main


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "config": {
            "records": args.records, "rounds": args.rounds, "partitions": args.partitions,
            "memory_records": args.memory_records, "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "kafka_python_crc32c": crc32c_implementation(), "texts": str(args.texts) if args.texts else "synthetic",
        },
    }  # fmt: skip
    factory = RecordFactory(texts=all_texts(args.texts) if args.texts else None)
    kafka_defaults = KafkaSettings()
    print(f"kafka-python CRC-32C: {crc32c_implementation()}; {os.cpu_count()} CPUs")
    topic = "bench-ingest"
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        create_topics(bootstrap, [topic], partitions=args.partitions)
        logger.info("producing %s records to %s", f"{args.records:,}", topic)
        produce_s = produce(bootstrap, topic, 0, args.records, factory)
        figures["produce"] = {"seconds": produce_s, "rate": args.records / produce_s}
        print(f"produce:          {args.records / produce_s:>10,.0f} rec/s  ({args.records:,} records, {produce_s:.1f}s)")

        rounds: list[dict[str, Any]] = []
        for n in range(1, args.rounds + 1):
            bare = bare_consume(bootstrap, topic, args.records, kafka_defaults, args.timeout)
            with tempfile.TemporaryDirectory(prefix="lifelong-bench-") as data_dir:
                ours = lifelong_ingest(bootstrap, topic, args.records, Path(data_dir), args.timeout)
            row = {
                "bare": asdict(bare) | {"rate": bare.rate, "rate_after_first": bare.rate_after_first},
                "lifelong": asdict(ours) | {"rate": ours.rate, "rate_after_first": ours.rate_after_first},
                "ratio": ours.rate / bare.rate,
                "ratio_after_first": ours.rate_after_first / bare.rate_after_first,
            }
            print(
                f"round {n}: bare {bare.rate:,.0f} rec/s ({bare.seconds:.2f}s, first record "
                f"{bare.first_record_s:.2f}s) | lifelong {ours.rate:,.0f} rec/s ({ours.seconds:.2f}s, first record "
                f"{ours.first_record_s:.2f}s) | ratio {row['ratio']:.2f}"
            )
            for name, overrides in args.variant:
                with tempfile.TemporaryDirectory(prefix="lifelong-bench-") as data_dir:
                    other = lifelong_ingest(bootstrap, topic, args.records, Path(data_dir), args.timeout,
                                            ingest=overrides)
                row.setdefault("variants", {})[name] = asdict(other) | {
                    "rate": other.rate, "ratio": other.rate / bare.rate, "vs_default": other.rate / ours.rate}
                print(f"round {n}: {name} {other.rate:,.0f} rec/s | ratio {other.rate / bare.rate:.2f} "
                      f"| {other.rate / ours.rate:.2f}x the default settings")
            rounds.append(row)
        figures["rounds"] = rounds
        if args.variant:
            figures["variants"] = {
                name: {"ingest": overrides,
                       "rate": statistics.median(r["variants"][name]["rate"] for r in rounds),
                       "ratio": statistics.median(r["variants"][name]["ratio"] for r in rounds),
                       "vs_default": statistics.median(r["variants"][name]["vs_default"] for r in rounds)}
                for name, overrides in args.variant
            }
        bare_rate = statistics.median(r["bare"]["rate"] for r in rounds)
        ours_rate = statistics.median(r["lifelong"]["rate"] for r in rounds)
        ratio = statistics.median(r["ratio"] for r in rounds)
        ratio_after_first = statistics.median(r["ratio_after_first"] for r in rounds)
        figures["summary"] = {
            "bare_rate": bare_rate, "lifelong_rate": ours_rate, "ratio": ratio,
            "ratio_after_first": ratio_after_first, "ratio_target": RATIO_TARGET, "ratio_ok": ratio >= RATIO_TARGET,
        }  # fmt: skip
        verdict = "OK" if ratio >= RATIO_TARGET else "BELOW TARGET"
        print(f"bare consumer:    {bare_rate:>10,.0f} rec/s  (median of {args.rounds})")
        print(f"lifelong ingest:  {ours_rate:>10,.0f} rec/s  (median of {args.rounds})")
        print(f"ratio:            {ratio:>10.2f}  (target >= {RATIO_TARGET}) {verdict}")
        print(f"ratio after first record (connect latency excluded): {ratio_after_first:.2f}")
        for name, variant in figures.get("variants", {}).items():
            print(f"{name + ':':<18}{variant['rate']:>10,.0f} rec/s  ratio {variant['ratio']:.2f}, "
                  f"{variant['vs_default']:.2f}x the default settings (medians of {args.rounds}; ingest {variant['ingest']})")

        if args.profile:
            # An extra ingest, not in the figures: cProfile slows the profiled thread several-fold.
            with tempfile.TemporaryDirectory(prefix="lifelong-bench-prof-") as data_dir:
                profiled = lifelong_ingest(
                    bootstrap, topic, args.records, Path(data_dir), args.timeout, profile_path=args.profile
                )
            logger.info("profiled ingest (not in the figures): %s rec/s", f"{profiled.rate:,.0f}")

        if args.memory_records:
            memory = run_memory_phase(args, bootstrap, factory)
            memory["growth_target_mb"] = MEMORY_GROWTH_TARGET_MB
            judged = max(memory["rss_growth_mb"], memory["rss_worst_growth_mb"])
            memory["growth_ok"] = judged < MEMORY_GROWTH_TARGET_MB
            figures["memory"] = memory
            verdict = "OK" if memory["growth_ok"] else "ABOVE TARGET"
            print(
                f"memory:           RSS {memory['rss_first_sample_mb']:.1f} MB at {memory['first_sample_at']:,} "
                f"stored, {memory['rss_end_mb']:.1f} MB at {memory['records']:,} (peak {memory['rss_peak_mb']:.1f} MB; "
                f"ingest {memory['rate']:,.0f} rec/s)"
            )
            print(
                f"memory growth:    {memory['rss_growth_mb']:>10.1f} MB  end - first sample; worst sample - first: "
                f"{memory['rss_worst_growth_mb']:.1f} MB (target < {MEMORY_GROWTH_TARGET_MB:.0f} MB) {verdict}"
            )
    return figures


def _variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME:KEY=VALUE,...`` -> (name, ingest overrides); a value that is not JSON is taken as a string."""
    name, sep, assignments = spec.partition(":")
    if not sep or not name or not assignments:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE]")
    overrides: dict[str, Any] = {}
    for assignment in assignments.split(","):
        key, eq, value = assignment.partition("=")
        if not eq or not key:
            raise argparse.ArgumentTypeError(f"{assignment!r} in {spec!r}: expected KEY=VALUE")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    try:
        load_settings(ingest=overrides)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{spec!r}: {exc}") from None
    return name, overrides


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--records", type=int, default=200_000, help="records for the throughput phase (default: %(default)s)")
    add("--rounds", type=int, default=3, help="bare/lifelong pairs; medians reported (default: %(default)s)")
    add("--partitions", type=int, default=1, help="partitions per topic (default: %(default)s)")
    add("--memory-records", type=int, default=1_000_000,
        help="records for the memory phase, run in a child process; 0 skips it (default: %(default)s)")
    add("--memory-sample-every", type=int, default=100_000, help="RSS sampling step (default: %(default)s)")
    add("--timeout", type=float, default=60.0, help="seconds without progress before giving up (default: %(default)s)")
    add("--json", type=Path, help="also write the figures as JSON to this file")
    add("--profile", type=Path, help="after the rounds, cProfile one extra ingest's thread into this .pstats file")
    add("--variant", type=_variant, action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="also ingest each round with these ingest settings (values as JSON), e.g. "
             "'keep:relabeled_text=\"keep\"'; its rate is reported beside the default's (repeatable)")
    add("--texts", type=Path, help="phrases from this file (CLINC150 data_full.json, or CSV/JSONL text,label) instead "
                                   "of the synthetic ones; the unique suffix is then spelled in letters")
    add("--check", action="store_true", help="exit with status 1 when a target is missed")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    # Internal: the memory phase's child process.
    add("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    add("--bootstrap", help=argparse.SUPPRESS)
    add("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.records < 1 or args.rounds < 1 or args.memory_records < 0:
        parser.error("--records and --rounds must be positive, --memory-records not negative")
    if 0 < args.memory_records < args.memory_sample_every:
        parser.error("--memory-records must be 0 or at least --memory-sample-every")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.log_level != "DEBUG":
        # kafka-python 3's I/O thread sometimes logs a traceback when a client is closed
        # mid-receive; the benchmark checks every record arrived, so that noise is dropped.
        logging.getLogger("kafka.net").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.memory_worker:
        result = memory_worker(args.bootstrap, args.topic, args.memory_records, args.memory_sample_every, args.timeout)
        print(json.dumps(result))
        return 0
    figures = run_benchmark(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        logger.info("figures written to %s", args.json)
    missed = not figures["summary"]["ratio_ok"] or not figures.get("memory", {}).get("growth_ok", True)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
