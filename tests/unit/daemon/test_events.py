"""OrderedEvents: promotion events leave in the order production moved, without blocking it."""

from __future__ import annotations

import threading
import time
from typing import Any

from daemon.serving.events import OrderedEvents, PublishError


class _Recorder:
    """Stands in for the Kafka publisher (tested against the real broker in test_lifecycle.py)."""

    def __init__(self, *, slow: set[str] = frozenset(), failing: set[str] = frozenset(), delay_s: float = 0.3) -> None:
        self.slow, self.failing, self.delay_s = slow, failing, delay_s
        self.delivered: list[str] = []
        self.closed = False
        self.release = threading.Event()

    def publish(self, event: dict[str, Any]) -> None:
        version = event["version"]
        if version in self.slow:
            self.release.wait(self.delay_s)
        if version in self.failing:
            raise PublishError(f"{version} not delivered")
        self.delivered.append(version)

    def close(self) -> None:
        self.closed = True


def test_a_slow_delivery_does_not_block_the_caller_and_later_events_wait_their_turn() -> None:
    # Called directly (the old way), the second publisher would finish first: v2 before v1.
    recorder = _Recorder(slow={"v1"}, delay_s=5.0)
    events = OrderedEvents(recorder, on_failed=lambda event, exc: None)
    events.put({"version": "v1"})  # returns at once although delivering v1 takes a while
    second = threading.Thread(target=events.put, args=({"version": "v2"},))
    second.start()
    second.join(timeout=1)
    assert not second.is_alive()
    time.sleep(0.2)
    assert recorder.delivered == []  # v2 has not overtaken v1
    recorder.release.set()
    assert events.join(5)
    assert recorder.delivered == ["v1", "v2"]
    events.close()
    assert recorder.closed


def test_a_failed_event_is_reported_and_the_next_ones_still_go() -> None:
    failed: list[tuple[str, str]] = []
    recorder = _Recorder(failing={"v2"})
    events = OrderedEvents(recorder, on_failed=lambda event, exc: failed.append((event["version"], str(exc))))
    for version in ("v1", "v2", "v3"):
        events.put({"version": version})
    assert events.join(5)
    assert recorder.delivered == ["v1", "v3"]
    assert failed == [("v2", "v2 not delivered")]
    events.close()


def test_close_delivers_what_is_queued_first() -> None:
    recorder = _Recorder(slow={"v1"}, delay_s=0.2)
    events = OrderedEvents(recorder, on_failed=lambda event, exc: None)
    for version in ("v1", "v2"):
        events.put({"version": version})
    events.close(timeout_s=5)
    assert recorder.delivered == ["v1", "v2"] and recorder.closed


def test_close_gives_up_on_a_stuck_publisher_and_reports_what_it_abandons() -> None:
    failed: list[str] = []
    recorder = _Recorder(slow={"v1"}, delay_s=30.0)
    events = OrderedEvents(recorder, on_failed=lambda event, exc: failed.append(event["version"]))
    for version in ("v1", "v2", "v3"):
        events.put({"version": version})
    started = time.monotonic()
    events.close(timeout_s=0.3)
    assert time.monotonic() - started < 5
    assert failed == ["v2", "v3"]  # v1 is still in flight; its own publish reports it
    assert not recorder.closed  # still in use by the delivery thread
    recorder.release.set()


def test_an_event_after_close_is_delivered_directly_not_lost() -> None:
    # An operator action still in flight on the closing API moves production after close().
    recorder = _Recorder()
    events = OrderedEvents(recorder, on_failed=lambda event, exc: None)
    events.close()
    events.put({"version": "v9"})
    assert recorder.delivered == ["v9"]
