"""The input contract: decode and validate one Kafka record value.

A value is a UTF-8 JSON object ``{"text": str, "label": str, "id": str?, "ts": str?,
"meta": object?}``. Anything else is rejected with a machine-readable reason (one of
:class:`Reason`) and a human-readable detail; rejection never raises, because one
bad record must not stop consumption. Unknown top-level keys are ignored so that
producers can add fields before lifelong knows them.

>>> limits = Limits()
>>> validate(b'{"text": "book a flight", "label": "travel"}', limits).label
'travel'
>>> validate(b'[1, 2]', limits).reason
<Reason.NOT_OBJECT: 'not_object'>
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

import orjson

from storage.split import content_hash

__all__ = ["Limits", "Reason", "Rejection", "ValidRecord", "validate"]


class Reason(StrEnum):
    """Why a record became a dead letter. Values are stable: they are stored and exported."""

    NULL_VALUE = "null_value"
    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_TEXT = "missing_text"
    MISSING_LABEL = "missing_label"
    EMPTY_TEXT = "empty_text"
    EMPTY_LABEL = "empty_label"
    WRONG_TYPE = "wrong_type"
    TEXT_TOO_LONG = "text_too_long"
    LABEL_TOO_LONG = "label_too_long"
    ID_TOO_LONG = "id_too_long"
    NULL_BYTES = "null_bytes"
    INVALID_TS = "invalid_ts"
    #: Validation itself failed on this record (a case the checks above do not foresee).
    #: The record is kept as a dead letter so that it cannot block its partition.
    UNPROCESSABLE = "unprocessable"


@dataclass(frozen=True)
class Limits:
    """Size limits from ``ingest`` settings."""

    max_text_chars: int = 10_000
    max_label_chars: int = 200
    max_id_chars: int = 200
    max_record_bytes: int = 1_000_000


@dataclass(slots=True)
class ValidRecord:
    """A record that met the contract. Not frozen: it is built once per record on the
    ingest hot path, where a frozen dataclass's per-field ``object.__setattr__`` costs."""

    text: str
    label: str
    content_hash: str
    external_id: str | None = None
    event_ts: datetime | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    detail: str


_MISSING = object()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


_STRING_FIELD_REASONS = {
    "text": (Reason.MISSING_TEXT, Reason.EMPTY_TEXT, Reason.TEXT_TOO_LONG),
    "label": (Reason.MISSING_LABEL, Reason.EMPTY_LABEL, Reason.LABEL_TOO_LONG),
}


def _required_string(obj: dict[str, Any], key: str, limit: int) -> str | Rejection:
    value = obj.get(key, _MISSING)
    if type(value) is not str:  # the common case first: one check, no isinstance chain
        if value is _MISSING:
            return Rejection(_STRING_FIELD_REASONS[key][0], f"field {key!r} is missing")
        if not isinstance(value, str):
            return Rejection(Reason.WRONG_TYPE, f"field {key!r} must be a string, got {_type_name(value)}")
    if "\x00" in value:
        return Rejection(Reason.NULL_BYTES, f"field {key!r} contains a NUL character")
    value = value.strip()
    if not value:
        return Rejection(_STRING_FIELD_REASONS[key][1], f"field {key!r} is empty")
    if len(value) > limit:
        return Rejection(_STRING_FIELD_REASONS[key][2], f"field {key!r} has {len(value)} characters, limit is {limit}")
    return value


def _parse_ts(value: Any) -> datetime | Rejection:
    if not isinstance(value, str):
        return Rejection(Reason.WRONG_TYPE, f"field 'ts' must be an ISO-8601 string, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return Rejection(Reason.INVALID_TS, f"field 'ts' is not ISO-8601: {value[:64]!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    # Stored in UTC: SQLite keeps no offset, so "12:00+02:00" must become 10:00, not 12:00.
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # "0001-01-01T00:00+01:00" has no UTC equivalent
        return Rejection(Reason.INVALID_TS, f"field 'ts' is out of range in UTC: {value[:64]!r}")


def validate(value: bytes | None, limits: Limits) -> ValidRecord | Rejection:
    """Check one raw Kafka value against the input contract; never raises.

    Whatever a producer sends must end as a sample or a dead letter: an exception here
    would stop its partition (the same record would be read again after every retry).
    """
    try:
        return _validate(value, limits)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return Rejection(Reason.UNPROCESSABLE, f"validation failed: {type(exc).__name__}: {str(exc)[:200]}")


def _validate(value: bytes | None, limits: Limits) -> ValidRecord | Rejection:
    if value is None:
        return Rejection(Reason.NULL_VALUE, "record has no value (tombstone)")
    if len(value) > limits.max_record_bytes:
        return Rejection(Reason.TOO_LARGE, f"value is {len(value)} bytes, limit is {limits.max_record_bytes}")
    try:
        decoded = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(Reason.INVALID_UTF8, f"value is not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        # orjson: strict (no NaN/Infinity, no lone surrogate escapes such as "\ud800",
        # which json.loads accepts and which then cannot be encoded for the database)
        # and about three times faster than json.loads on these small objects.
        obj = orjson.loads(decoded)
    except (ValueError, RecursionError) as exc:
        return Rejection(Reason.NOT_JSON, f"value is not JSON: {str(exc)[:200]}")
    if not isinstance(obj, dict):
        return Rejection(Reason.NOT_OBJECT, f"value must be a JSON object, got {_type_name(obj)}")

    text = _required_string(obj, "text", limits.max_text_chars)
    if isinstance(text, Rejection):
        return text
    label = _required_string(obj, "label", limits.max_label_chars)
    if isinstance(label, Rejection):
        return label

    external_id = obj.get("id")
    if external_id is not None:
        if isinstance(external_id, bool) or not isinstance(external_id, (str, int)):
            return Rejection(Reason.WRONG_TYPE, f"field 'id' must be a string, got {_type_name(external_id)}")
        external_id = str(external_id)
        if "\x00" in external_id:
            return Rejection(Reason.NULL_BYTES, "field 'id' contains a NUL character")
        if len(external_id) > limits.max_id_chars:
            return Rejection(Reason.ID_TOO_LONG, f"field 'id' has {len(external_id)} characters, limit is {limits.max_id_chars}")

    event_ts = None
    if obj.get("ts") is not None:
        event_ts = _parse_ts(obj["ts"])
        if isinstance(event_ts, Rejection):
            return event_ts

    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        return Rejection(Reason.WRONG_TYPE, f"field 'meta' must be an object, got {_type_name(meta)}")
    if meta is not None:
        try:
            encoded = orjson.dumps(meta)
        except orjson.JSONEncodeError as exc:  # e.g. nested deeper than orjson writes (254 levels)
            return Rejection(Reason.WRONG_TYPE, f"field 'meta' cannot be stored as JSON: {exc}")
        if b"\\u0000" in encoded:
            return Rejection(Reason.NULL_BYTES, "field 'meta' contains a NUL character")

    return ValidRecord(
        text=text,
        label=label,
        content_hash=content_hash(text, label),
        external_id=external_id,
        event_ts=event_ts,
        meta=meta,
    )
