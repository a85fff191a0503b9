from __future__ import annotations

import json

import pytest

from daemon.ingest.records import Limits, Reason, Rejection, ValidRecord, validate
from storage.split import content_hash

LIMITS = Limits(max_text_chars=20, max_label_chars=10, max_id_chars=8, max_record_bytes=200)


class TestValidate:
    def test_validate_accepts_a_full_record(self) -> None:
        value = json.dumps({"text": " hello there ", "label": "greet", "id": "a1", "ts": "2026-01-02T03:04:05Z",
                            "meta": {"src": "web"}, "extra": 1}).encode()
        got = validate(value, LIMITS)
        assert isinstance(got, ValidRecord)
        assert (got.text, got.label, got.external_id, got.meta) == ("hello there", "greet", "a1", {"src": "web"})
        assert got.event_ts is not None and got.event_ts.isoformat() == "2026-01-02T03:04:05+00:00"
        assert got.content_hash == content_hash("hello there", "greet")

    def test_validate_naive_timestamp_is_taken_as_utc(self) -> None:
        got = validate(b'{"text": "t", "label": "l", "ts": "2026-01-02T03:04:05"}', LIMITS)
        assert isinstance(got, ValidRecord) and got.event_ts is not None
        assert got.event_ts.utcoffset() is not None and got.event_ts.utcoffset().total_seconds() == 0

    @pytest.mark.parametrize("value", [
        b'{"text": "lone \\ud800 surrogate", "label": "l"}',
        b'{"text": "t", "label": "l", "meta": {"k": "\\udfff"}}',
        b'{"text": "t", "label": "l", "score": NaN}',
        b'{"text": "t", "label": "l", "score": Infinity}',
    ])
    def test_validate_turns_unstorable_json_into_a_dead_letter_not_an_exception(self, value: bytes) -> None:
        """json.loads accepts these; a lone surrogate then cannot be encoded for the database."""
        got = validate(value, LIMITS)
        assert isinstance(got, Rejection) and got.reason is Reason.NOT_JSON

    def test_validate_normalizes_an_offset_timestamp_to_utc(self) -> None:
        got = validate(b'{"text": "t", "label": "l", "ts": "2026-01-02T12:00:00+02:00"}', LIMITS)
        assert isinstance(got, ValidRecord) and got.event_ts is not None
        assert got.event_ts.isoformat() == "2026-01-02T10:00:00+00:00"

    @pytest.mark.parametrize(
        ("value", "reason", "detail"),
        [
            (None, Reason.NULL_VALUE, "record has no value (tombstone)"),
            (b"x" * 201, Reason.TOO_LARGE, "value is 201 bytes, limit is 200"),
            (b'{"text": "\xff"}', Reason.INVALID_UTF8, "value is not UTF-8: invalid start byte at byte 10"),
            (b"{not json", Reason.NOT_JSON, "value is not JSON: unexpected character, expected a string key"),
            (b"[]", Reason.NOT_OBJECT, "value must be a JSON object, got list"),
            (b"null", Reason.NOT_OBJECT, "value must be a JSON object, got null"),
            (b'{"label": "l"}', Reason.MISSING_TEXT, "field 'text' is missing"),
            (b'{"text": "t"}', Reason.MISSING_LABEL, "field 'label' is missing"),
            (b'{"text": " ", "label": "l"}', Reason.EMPTY_TEXT, "field 'text' is empty"),
            (b'{"text": "t", "label": ""}', Reason.EMPTY_LABEL, "field 'label' is empty"),
            (b'{"text": null, "label": "l"}', Reason.WRONG_TYPE, "field 'text' must be a string, got null"),
            (b'{"text": "t", "label": 3}', Reason.WRONG_TYPE, "field 'label' must be a string, got int"),
            (b'{"text": "t", "label": "l", "id": [1]}', Reason.WRONG_TYPE, "field 'id' must be a string, got list"),
            (b'{"text": "t", "label": "l", "id": true}', Reason.WRONG_TYPE, "field 'id' must be a string, got bool"),
            (b'{"text": "t", "label": "l", "meta": "x"}', Reason.WRONG_TYPE, "field 'meta' must be an object, got str"),
            (b'{"text": "t", "label": "l", "ts": 5}', Reason.WRONG_TYPE,
             "field 'ts' must be an ISO-8601 string, got int"),
            (b'{"text": "aaaaaaaaaaaaaaaaaaaaa", "label": "l"}', Reason.TEXT_TOO_LONG,
             "field 'text' has 21 characters, limit is 20"),
            (b'{"text": "t", "label": "lllllllllll"}', Reason.LABEL_TOO_LONG,
             "field 'label' has 11 characters, limit is 10"),
            (b'{"text": "t", "label": "l", "id": "123456789"}', Reason.ID_TOO_LONG,
             "field 'id' has 9 characters, limit is 8"),
            (b'{"text": "a\\u0000b", "label": "l"}', Reason.NULL_BYTES, "field 'text' contains a NUL character"),
            (b'{"text": "t", "label": "l", "meta": {"k": "\\u0000"}}', Reason.NULL_BYTES,
             "field 'meta' contains a NUL character"),
            (b'{"text": "t", "label": "l", "ts": "soon"}', Reason.INVALID_TS, "field 'ts' is not ISO-8601: 'soon'"),
        ],
    )
    def test_validate_rejects_with_reason_and_detail(self, value: bytes | None, reason: Reason, detail: str) -> None:
        got = validate(value, LIMITS)
        assert isinstance(got, Rejection)
        assert got.reason is reason
        assert got.detail.startswith(detail)

    def test_validate_deeply_nested_json_is_not_json_not_a_crash(self) -> None:
        value = b"[" * 100_000 + b"]" * 100_000
        got = validate(value, Limits(max_record_bytes=1_000_000))
        assert isinstance(got, Rejection) and got.reason is Reason.NOT_JSON

    def test_validate_integer_id_is_kept_as_string(self) -> None:
        got = validate(b'{"text": "t", "label": "l", "id": 42}', LIMITS)
        assert isinstance(got, ValidRecord) and got.external_id == "42"


class TestNeverRaises:
    """Whatever arrives ends as a sample or a dead letter: an exception would block its partition."""

    @pytest.mark.parametrize(("value", "reason"), [
        (b'{"text": "a", "label": "b", "meta": ' + b'{"a": ' * 300 + b"1" + b"}" * 300 + b"}", Reason.WRONG_TYPE),
        (b'{"text": "a", "label": "b", "ts": "0001-01-01T00:00:00+01:00"}', Reason.INVALID_TS),
        (b'{"text": "a", "label": "b", "ts": "9999-12-31T23:59:59-01:00"}', Reason.INVALID_TS),
        (b'[' * 2000 + b']' * 2000, Reason.NOT_JSON),
    ])
    def test_edge_cases_become_dead_letters(self, value: bytes, reason: Reason) -> None:
        got = validate(value, Limits(max_text_chars=20, max_label_chars=10, max_id_chars=8,
                                     max_record_bytes=100_000))
        assert isinstance(got, Rejection) and got.reason is reason, got

    def test_an_unforeseen_failure_is_an_unprocessable_dead_letter(self) -> None:
        class Exploding(bytes):
            def decode(self, *args: object, **kwargs: object) -> str:
                raise MemoryError("simulated")

        got = validate(Exploding(b'{"text": "a", "label": "b"}'), LIMITS)
        assert isinstance(got, Rejection) and got.reason is Reason.UNPROCESSABLE
        assert got.detail == "validation failed: MemoryError: simulated"


# ---------------------------------------------------------------- property tests (hypothesis)

from hypothesis import given, settings  # noqa: E402 - grouped with the tests that use it
from hypothesis import strategies as st  # noqa: E402

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
_json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
#: Escapes json.dumps never writes but a producer may: lone surrogates, NUL, NaN.
_nasty_strings = st.sampled_from(['"\\ud800"', '"a\\udfffb"', '"\\u0000x"', '"x\\u0000"', "NaN", "Infinity",
                                  '"\\ud83d\\ude00"', '"  "', '""', '"ok"'])


def _check_contract(got: ValidRecord | Rejection) -> None:
    """Whatever came in, the outcome is one the consumer can store: never UNPROCESSABLE, always encodable."""
    if isinstance(got, Rejection):
        assert got.reason is not Reason.UNPROCESSABLE, got.detail
        return
    for value in (got.text, got.label, got.external_id or ""):
        value.encode("utf-8")  # raises on a lone surrogate
        assert "\x00" not in value
    assert got.text.strip() and got.label.strip()
    assert len(got.text) <= LIMITS.max_text_chars and len(got.label) <= LIMITS.max_label_chars
    assert got.content_hash == content_hash(got.text, got.label)


class TestValidateProperties:
    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=300))
    def test_any_bytes(self, value: bytes) -> None:
        _check_contract(validate(value, LIMITS))

    @settings(max_examples=500, deadline=None)
    @given(st.fixed_dictionaries({}, optional={"text": _json_values, "label": _json_values, "id": _json_values,
                                               "ts": _json_values, "meta": _json_values}))
    def test_any_object_with_the_contract_keys(self, obj: dict) -> None:
        _check_contract(validate(json.dumps(obj).encode(), LIMITS))

    @settings(max_examples=300, deadline=None)
    @given(text=_nasty_strings, label=_nasty_strings, meta=_nasty_strings)
    def test_escapes_json_dumps_never_writes(self, text: str, label: str, meta: str) -> None:
        raw = f'{{"text": {text}, "label": {label}, "meta": {{"k": {meta}}}}}'.encode()
        _check_contract(validate(raw, LIMITS))
