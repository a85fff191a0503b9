"""The fault-test hooks: inert unless their variable is set, and named so that the daemon can warn."""

from __future__ import annotations

import pytest

from daemon import failpoints


def test_no_hook_is_reported_in_a_clean_environment() -> None:
    assert failpoints.armed_test_hooks({"LIFELONG_API__TOKEN": "x", "LIFELONG_TEST_KILL_AT": ""}) == []


def test_each_set_hook_is_one_sentence_naming_the_variable_its_value_and_its_effect() -> None:
    hooks = failpoints.armed_test_hooks({"LIFELONG_TEST_KILL_AT": "after_alias",
                                         "LIFELONG_TEST_WORKER_MAX_FILE_BYTES": "4096"})
    assert hooks == [
        "LIFELONG_TEST_KILL_AT='after_alias': the process kills itself with SIGKILL at these failpoints",
        "LIFELONG_TEST_WORKER_MAX_FILE_BYTES='4096': every file the training worker writes is capped at this many "
        "bytes (RLIMIT_FSIZE), so saving a candidate fails as on a full disk",
    ]


def test_the_worker_reads_the_file_size_hook_under_the_name_the_warning_uses() -> None:
    from learners.worker import MAX_FILE_BYTES_ENV

    assert MAX_FILE_BYTES_ENV in failpoints.TEST_HOOKS


def test_an_armed_action_runs_once_and_an_unnamed_point_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(failpoints.ENV, "some_other_point")
    calls: list[str] = []
    failpoints.arm(failpoints.AFTER_PUBLISH, lambda: calls.append("ran"))
    failpoints.reached(failpoints.AFTER_PUBLISH)  # not named in the variable: no kill
    failpoints.reached(failpoints.AFTER_PUBLISH)
    assert calls == ["ran"]
