"""All of lifelong's configuration, in one place.

Settings come from, highest priority first: keyword arguments (tests), ``LIFELONG_*``
environment variables (nested keys joined with ``__``, e.g.
``LIFELONG_KAFKA__BOOTSTRAP_SERVERS``), a YAML file, then the defaults below.
Unknown keys and invalid values fail at load time with a message naming the key,
because a typo silently falling back to a default is how a daemon ends up reading
the wrong topic for a week.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from sqlalchemy.engine import make_url

from daemon.errors import DaemonError
from learners.buffer import BufferConfig
from learners.config import AdapterConfig, StrategyConfig, check_adapter

__all__ = [
    "ApiSettings",
    "BufferSettings",
    "DriftSettings",
    "GatePolicy",
    "EvaluationSettings",
    "ScheduleSettings",
    "ServingSettings",
    "TrainingSettings",
    "ConfigError",
    "DatabaseSettings",
    "IngestSettings",
    "KafkaSettings",
    "LoggingSettings",
    "Settings",
    "load_settings",
    "masked_dump",
]

#: Environment variable naming the YAML file when ``--config`` is not given.
CONFIG_FILE_ENV = "LIFELONG_CONFIG_FILE"

#: Variables the CLI reads itself (``LIFELONG_<name>``): the config file, the daemon's URL and token.
_CLI_ENV = ("CONFIG_FILE", "URL", "TOKEN")

_yaml_data: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("_yaml_data", default={})


class ConfigError(DaemonError):
    """The configuration cannot be loaded; the message names every offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KafkaSettings(_Section):
    """Where records come from. ``bootstrap_servers`` unset means: start the embedded broker."""

    bootstrap_servers: Annotated[list[str] | None, NoDecode] = None
    topics: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["lifelong.samples"], min_length=1)
    topic_prefix: str = Field(default="lifelong", pattern=r"^[A-Za-z0-9._-]+$")
    group_id: str = "lifelong"
    client_id: str = "lifelong"
    #: ``manual``: this daemon reads every partition of its topics (instant start; the
    #: database holds the position). ``group``: partitions are shared among the members
    #: of ``group_id`` and each assignment seeks to the stored offsets.
    assignment: Literal["manual", "group"] = "manual"
    #: Where to start a partition the database has never seen.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    dead_letter_topic: str | None = None
    poll_timeout_ms: int = Field(default=500, ge=10, le=60_000)
    #: Records per poll, and so per database transaction: bigger batches amortise the
    #: commit (measured: 2,000 -> 10,000 gave +35% ingest rate on SQLite).
    max_poll_records: int = Field(default=10_000, ge=1, le=100_000)
    max_partition_fetch_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    fetch_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    #: Group mode: the longest gap between polls before the group evicts this member.
    #: Ingestion polls on its own thread and training runs in a worker process, so a
    #: retrain of any length never comes near it (a fault test checks this at 12 s).
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    #: How long one connection attempt at start may block; the ingest loop retries with
    #: backoff, and a short attempt keeps shutdown prompt while the broker is down.
    bootstrap_timeout_ms: int = Field(default=5_000, ge=100)
    #: Upper bound of kafka-python's reconnect backoff after the broker went away.
    reconnect_backoff_max_ms: int = Field(default=10_000, ge=50)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    ssl_check_hostname: bool = True

    @field_validator("bootstrap_servers", "topics", mode="before")
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        # Environment variables carry lists as "a:9092,b:9092" (or as a JSON list).
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            return items or None
        return value

    @model_validator(mode="after")
    def _check_sasl(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(f"sasl_mechanism is required when security_protocol is {self.security_protocol}")
        return self

    @property
    def embedded(self) -> bool:
        """True when lifelong must start its own broker."""
        return not self.bootstrap_servers

    @property
    def promotions_topic(self) -> str:
        return f"{self.topic_prefix}.promotions"

    def client_security_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments for TLS/SASL, passed through unchanged."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_plain_username is not None:
            options["sasl_plain_username"] = self.sasl_plain_username
        if self.sasl_plain_password is not None:
            options["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                options[name] = str(value)
        if self.ssl_password is not None:
            options["ssl_password"] = self.ssl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_check_hostname"] = self.ssl_check_hostname
        return options


class DatabaseSettings(_Section):
    """The durable store. SQLite by default; ``postgresql+psycopg://...`` in production."""

    #: Unset means ``sqlite:///<data_dir>/lifelong.db``.
    url: str | None = None
    busy_timeout_ms: int = Field(default=10_000, ge=0)
    #: Apply pending migrations at start instead of refusing to run.
    auto_migrate: bool = False
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split(":", 1)[0]
        if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
            raise ValueError(f"unsupported database URL scheme {scheme!r}; use sqlite:/// or postgresql+psycopg://")
        return value


#: The kinds of PII ``ingest.redact_pii`` can replace (``daemon.ingest.redaction``).
PiiEntity = Literal["email", "phone", "card", "iban", "ip"]
PII_ENTITY_NAMES: tuple[str, ...] = ("email", "phone", "card", "iban", "ip")


class IngestSettings(_Section):
    """Validation limits and the held-out split applied to every record."""

    max_text_chars: int = Field(default=10_000, ge=1)
    max_label_chars: int = Field(default=200, ge=1)
    max_id_chars: int = Field(default=200, ge=1)
    #: A value larger than this is dead-lettered before it is even decoded.
    max_record_bytes: int = Field(default=1_000_000, ge=64)
    #: How much of a bad record's raw bytes the dead-letter store keeps.
    dead_letter_raw_bytes: int = Field(default=4096, ge=0, le=1_000_000)
    #: Skip a record whose (text, label) was stored before, even at another offset.
    dedupe_content: bool = True
    #: A text that arrives again with another label: ``supersede`` deletes the stored sample
    #: (the newer label is the correction), ``keep`` stores both.
    relabeled_text: Literal["supersede", "keep"] = "supersede"
    heldout_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    #: A label that reaches this many samples with none held out gets its next one held out.
    heldout_min_per_label: int = Field(default=10, ge=1)
    retry_backoff_initial_s: float = Field(default=0.5, gt=0)
    retry_backoff_max_s: float = Field(default=30.0, gt=0)
    #: Samples and dead letters stored longer ago than this are deleted (and logged answers
    #: are kept no longer than this either); unset keeps them for ever.
    retention_days: int | None = Field(default=None, ge=1, le=36_500)
    #: Rows per retention transaction, and how often the retention pass runs.
    retention_batch: int = Field(default=1000, ge=1, le=100_000)
    retention_every_s: float = Field(default=3600.0, ge=1)
    #: PII replaced by a typed placeholder (``<EMAIL>``, ``<PHONE>``, ``<CARD>``, ``<IBAN>``,
    #: ``<IP>``) before a text is stored, trained on or logged as a prediction; empty: off.
    #: See ``daemon.ingest.redaction``.
    redact_pii: Annotated[tuple[PiiEntity, ...], NoDecode] = ()
    #: Regions whose national phone formats (no ``+`` prefix) are recognised; international
    #: numbers are found whatever the list. Each region costs redaction time.
    pii_phone_regions: Annotated[tuple[str, ...], NoDecode] = Field(default=("US", "GB", "DE", "FR", "IN", "CA"), min_length=1)

    @field_validator("redact_pii", "pii_phone_regions", mode="before")
    @classmethod
    def _pii_lists(cls, value: Any, info: ValidationInfo) -> Any:
        if value == "all" and info.field_name == "redact_pii":
            return PII_ENTITY_NAMES
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):  # LIFELONG_INGEST__REDACT_PII=email,card
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("pii_phone_regions")
    @classmethod
    def _phone_regions(cls, regions: tuple[str, ...]) -> tuple[str, ...]:
        for region in regions:
            if not re.fullmatch(r"[A-Z]{2}", region):
                raise ValueError(f"phone region {region!r} must be a two-letter ISO 3166 code such as 'US'")
        return regions


class BufferSettings(_Section):
    """The replay buffer's budget and policy (see :mod:`learners.buffer`)."""

    policy: Literal["reservoir", "class_balanced"] = "class_balanced"
    #: A fixed budget in samples; leave unset to use ``fraction``.
    size: int | None = Field(default=None, ge=0)
    fraction: float | None = Field(default=0.03, gt=0, le=1)
    min_size: int = Field(default=200, ge=0)
    max_size: int | None = Field(default=10_000, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _one_budget(self) -> BufferSettings:
        if self.size is not None:
            # A fixed size replaces the fractional default and its bounds.
            object.__setattr__(self, "fraction", None)
            object.__setattr__(self, "min_size", 0)
            object.__setattr__(self, "max_size", None)
        self.to_config()  # the learner's own checks, with their messages
        return self

    def to_config(self) -> BufferConfig:
        return BufferConfig(policy=self.policy, size=self.size, fraction=self.fraction, min_size=self.min_size,
                            max_size=self.max_size, seed=self.seed)


class TrainingSettings(_Section):
    """How candidates are trained."""

    #: A Hugging Face encoder directory; unset means the bundled all-MiniLM-L6-v2.
    base_model: Path | None = None
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    #: ``lora``: train low-rank adapters instead of every encoder weight (``adapter: lora``
    #: or a mapping with ``r``, ``alpha``, ``dropout``, ``target_modules``); not with slda.
    adapter: Annotated[AdapterConfig, NoDecode] = Field(default_factory=AdapterConfig)
    buffer: BufferSettings = Field(default_factory=BufferSettings)
    min_samples_per_label: int = Field(default=5, ge=1)
    #: After the gate rejects a candidate for forgetting old labels, the next retrain from
    #: the same production model replays up to this many stored training samples of each
    #: of those labels on top of the buffer (strategies with replay; 0 turns it off).
    regressed_replay_per_label: int = Field(default=50, ge=0, le=100_000)
    timeout_s: float = Field(default=3600.0, gt=0)
    #: "cpu", "cuda", "cuda:1"; unset picks CUDA when present.
    device: str | None = None
    #: torch threads of the training worker; unset uses every core. Set it below the
    #: core count when heavy ingestion shares a small machine with training.
    torch_threads: int | None = Field(default=None, ge=1, le=1024)
    #: How the training process starts. ``forkserver``: forked from a server process the
    #: daemon starts at boot, which has torch, transformers (and Avalanche, unless the
    #: strategy is slda) imported once, so a retrain starts in under a second; it stays
    #: resident (a few hundred MiB, shared with the runs it forks). ``spawn``: a fresh
    #: interpreter per run, nothing resident between runs, 10-20 s of imports each time.
    worker_start: Literal["forkserver", "spawn"] = "forkserver"
    #: Artifacts kept besides production and previous (newest first); older ones are pruned.
    retain_versions: int = Field(default=10, ge=0)
    #: What SIGTERM/SIGINT does to a running retrain: ``cancel`` stops the worker (the run
    #: is recorded as cancelled, nothing is published); ``finish`` lets it complete for up
    #: to ``shutdown_grace_s`` and cancels it after that.
    on_shutdown: Literal["cancel", "finish"] = "cancel"
    shutdown_grace_s: float = Field(default=600.0, ge=0)
    #: The training lease in the database: only its holder trains. A holder that stops
    #: renewing (crashed, partitioned) loses it after ``lease_ttl_s``; standbys then take over.
    lease_ttl_s: float = Field(default=30.0, ge=3, le=3600)

    @model_validator(mode="after")
    def _adapter_fits_strategy(self) -> TrainingSettings:
        check_adapter(self.strategy, self.adapter)
        return self


class ScheduleSettings(_Section):
    """When retrains start besides an operator asking (``POST /v1/retrain``, ``lifelong retrain``).

    Every trigger goes through one single-flight coordinator: a trigger while a run is
    active joins that run. ``min_gap_s`` holds back the schedule and volume triggers
    (not an operator) until that long after the last run started.
    """

    #: Retrain every this many seconds; unset for none. Exclusive with ``cron``.
    interval_s: float | None = Field(default=None, gt=0)
    #: Time zone of ``cron`` (IANA name).
    timezone: str = "UTC"
    #: A 5-field crontab expression (minute hour day month weekday), e.g. ``"0 3 * * *"``.
    cron: str | None = None
    #: Retrain when at least this many new training samples arrived since the last run.
    volume_threshold: int | None = Field(default=None, ge=1)
    #: How often the volume trigger counts new samples.
    volume_check_s: float = Field(default=10.0, gt=0, le=3600)
    min_gap_s: float = Field(default=0.0, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            from daemon.crontab import crontab_trigger

            try:
                crontab_trigger(value, info.data.get("timezone", "UTC"))
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a valid 5-field crontab expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> ScheduleSettings:
        if self.cron is not None and self.interval_s is not None:
            raise ValueError("set interval_s or cron, not both")
        return self


#: ``meta.<name>``: the name is stored as part of an evaluation set's name (32 characters).
_SLICE_KEY = re.compile(r"meta\.[A-Za-z0-9_.-]{1,26}")


class GatePolicy(BaseModel):
    """The promotion thresholds, the daemon's ``gate:`` settings (applied by ``daemon.training.gate``).

    Scores and thresholds are fractions in [0, 1]; unknown keys and out-of-range
    values are rejected with the field's name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: The metric that must not get worse.
    primary_metric: Literal["macro_f1", "accuracy"] = "macro_f1"
    #: The evaluation set the primary metric is read from.
    primary_set: str = Field(default="all", min_length=1)  # daemon.training.gate.ALL_SET
    #: Candidate primary minus production primary must be at least this; 0.0 means "not worse".
    min_improvement: float = Field(default=0.0, ge=0.0, le=1.0)
    #: How far the ``old_labels`` set's primary metric may drop versus production.
    max_forgetting: float = Field(default=0.05, ge=0.0, le=1.0)
    #: How far each well-supported old label's F1 may drop versus production.
    max_label_forgetting: float = Field(default=0.25, ge=0.0, le=1.0)
    #: Held-out samples (in the ``all`` set) an old label needs before its F1 is checked.
    min_label_support: int = Field(default=10, ge=1)
    #: With paired outcomes, a per-label drop fails only if the sign test's p-value is below this.
    label_forgetting_alpha: float = Field(default=0.01, gt=0.0, le=1.0)
    #: Highest share of the ``all`` set that production got right and the candidate gets wrong.
    max_negative_flip_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    #: With flip counts, a flip rate over the limit fails only if the binomial test's p-value is below this.
    flip_rate_alpha: float = Field(default=0.01, gt=0.0, le=1.0)
    #: How much more of the in-scope ``all`` set the candidate may abstain on than production.
    max_abstain_increase: float = Field(default=0.05, ge=0.0, le=1.0)
    #: An abstain rate over the limit fails only if the binomial test's p-value is below this.
    abstain_alpha: float = Field(default=0.01, gt=0.0, le=1.0)
    #: The first model (no production) needs only this primary score.
    min_absolute: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Fewest samples in the primary set to promote on at all (first model too).
    min_eval_samples: int = Field(default=1, ge=1)
    #: Group keys of the held-out samples, ``meta.<key>``, evaluated group by group; a
    #: candidate that makes one group's answers significantly worse is rejected even when
    #: the average improves (see ``daemon.training.slices``).
    slices: tuple[str, ...] = Field(default=(), max_length=8)
    #: Per slice key, the most frequent values evaluated as groups; the rest are pooled as ``(other)``.
    slice_top_n: int = Field(default=5, ge=1, le=50)
    #: Old-label held-out samples a group needs before its forgetting is checked.
    slice_min_support: int = Field(default=30, ge=1)
    #: How far a group's accuracy on old labels may drop versus production.
    max_slice_forgetting: float = Field(default=0.05, ge=0.0, le=1.0)
    #: A group's drop over the limit fails only if the sign test's p-value is below this
    #: divided by the number of groups checked (Bonferroni: more groups, no more false alarms).
    slice_alpha: float = Field(default=0.01, gt=0.0, le=1.0)
    #: Share of held-out samples that must carry a slice key; below it the key is reported as
    #: missing and the candidate is not promoted (a group the gate cannot see is not protected).
    slice_min_coverage: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("slices")
    @classmethod
    def _slice_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if not _SLICE_KEY.fullmatch(key):
                raise ValueError(f"slice key {key!r} must be 'meta.<name>' with <name> of 1-26 characters "
                                 "from letters, digits, '_', '-' and '.'")
        if len(set(keys)) != len(keys):
            raise ValueError(f"slice keys repeat: {list(keys)}")
        return keys


class EvaluationSettings(_Section):
    """How candidates and production are scored on held-out samples."""

    #: Size of the ``recent`` evaluation set (newest held-out samples).
    recent_window: int = Field(default=500, ge=0)
    #: Each label's newest held-out samples scored at an evaluation, at most; bounds its
    #: time and memory on a long stream (the soak's held-out set grows by 10% of the records).
    max_heldout_per_label: int | None = Field(default=500, ge=10, le=1_000_000)
    batch_size: int = Field(default=64, ge=1, le=4096)
    #: Share of in-scope held-out samples each version's abstain threshold gives up on
    #: (its calibrated max-softmax quantile; see ``learners.calibration``). 0 turns the
    #: calibration, abstention and the gate's ``abstain_rate`` check off.
    abstain_in_scope: float = Field(default=0.05, ge=0.0, le=0.5)
    #: Records with this label are out-of-scope examples: never a class, never trained on;
    #: their held-out samples set the abstain threshold (and are scored in the report).
    oos_label: str | None = Field(default=None, min_length=1, max_length=1000)


class DriftSettings(_Section):
    """The drift trigger: retrain when live traffic moves away from production's training data.

    Off by default, like the schedule and volume triggers. See ``daemon.training.drift``.
    """

    enabled: bool = False
    #: How often the detectors read what arrived (served confidences, stored labels).
    check_s: float = Field(default=30.0, gt=0, le=3600)
    #: Values a detector needs since its last reset before it may report a drift.
    min_samples: int = Field(default=300, ge=10)
    #: ADWIN's confidence parameter: smaller means fewer false alarms and later detection.
    delta: float = Field(default=0.002, gt=0.0, lt=1.0)
    #: Served texts whose embeddings are compared with production's held-out ones (a kernel
    #: two-sample test) each time this many new ones arrived; 0 turns the embedding detector off.
    embedding_window: int = Field(default=200, ge=0, le=1000)
    #: The embedding detector fires when the test's p-value is below this.
    embedding_alpha: float = Field(default=0.01, ge=0.001, le=0.5)

    @field_validator("embedding_window")
    @classmethod
    def _window_big_enough(cls, value: int) -> int:
        if 0 < value < 20:
            raise ValueError("embedding_window must be 0 (off) or at least 20 texts")
        return value


class ServingSettings(_Section):
    """Limits of ``/v1/predict``."""

    max_batch: int = Field(default=64, ge=1, le=10_000)
    max_text_chars: int = Field(default=10_000, ge=1)
    #: Probabilities returned per text (the most likely labels).
    top_k: int = Field(default=5, ge=1)
    #: Answer ``label: null, abstained: true`` when the calibrated confidence is below the
    #: serving version's threshold (set by ``evaluation.abstain_in_scope``); off, always a label.
    abstain: bool = True
    #: Store every answer (request id, version, label, confidence, text hash) for the join
    #: with labels that arrive later under the same id: production's live accuracy.
    log_predictions: bool = True
    #: Also store the texts themselves in the prediction log (off: only their SHA-256).
    log_texts: bool = False
    #: Logged answers older than this are deleted, in bounded batches, once an hour.
    prediction_retention_days: int = Field(default=30, ge=1, le=3650)
    #: How often the daemon checks which version the database calls production, so a
    #: standby (not the trainer) serves what the trainer promoted.
    follow_production_s: float = Field(default=10.0, gt=0, le=3600)


class ApiSettings(_Section):
    """The HTTP control plane (health, readiness and metrics for now)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    token: SecretStr | None = None
    #: Largest request body read, in bytes; larger ones get a 413 before they are read
    #: (and a request without the token a 401 before its body is read at all). Unset:
    #: enough for the largest valid predict batch (``serving.max_batch`` texts of
    #: ``serving.max_text_chars`` characters, about 3.9 MB at the defaults).
    max_body_bytes: int | None = Field(default=None, ge=1024)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(default=False, alias="json")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _YamlSource(PydanticBaseSettingsSource):
    """Feeds the YAML file loaded by :func:`load_settings` into pydantic-settings."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get())


class Settings(BaseSettings):
    """The daemon's effective configuration."""

    model_config = SettingsConfigDict(
        env_prefix="LIFELONG_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path("lifelong-data")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    gate: GatePolicy = Field(default_factory=GatePolicy)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    #: The YAML file read, and the dotted names of the secrets it holds (see daemon.file_safety).
    _config_file: Path | None = PrivateAttr(default=None)
    _file_secrets: tuple[str, ...] = PrivateAttr(default=())

    @property
    def config_file(self) -> Path | None:
        return self._config_file

    @property
    def file_secrets(self) -> tuple[str, ...]:
        """Secret settings given in the config file (not the environment): the file must be private."""
        return self._file_secrets

    @model_validator(mode="after")
    def _default_database_in_data_dir(self) -> Settings:
        if self.database.url is None:
            self.database.url = f"sqlite:///{self.data_dir / 'lifelong.db'}"
        return self

    @property
    def database_url(self) -> str:
        """The resolved database URL (never ``None`` after validation)."""
        return self.database.url or f"sqlite:///{self.data_dir / 'lifelong.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "<root>"
        lines.append(f"{key}: {error['msg'].removeprefix('Value error, ')}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _unknown_env_keys() -> list[str]:
    # pydantic-settings silently ignores LIFELONG_* variables that match no field;
    # a misspelt variable must fail like a misspelt YAML key.
    known = {name.upper() for name in Settings.model_fields} | set(_CLI_ENV)
    unknown = []
    for name in os.environ:
        if not name.startswith("LIFELONG_"):
            continue
        if name.startswith("LIFELONG_TEST_"):
            continue  # the test suite's own variables (e.g. LIFELONG_TEST_POSTGRES_URL)
        head, _, rest = name[len("LIFELONG_"):].partition("__")
        if head not in known:
            unknown.append(name)
            continue
        field = Settings.model_fields[head.lower()] if head.lower() in Settings.model_fields else None
        annotation = getattr(field, "annotation", None)
        if rest and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names = {n.upper() for n in annotation.model_fields}
            names |= {f.alias.upper() for f in annotation.model_fields.values() if f.alias}
            if rest.split("__", 1)[0] not in names:
                unknown.append(name)
    return sorted(unknown)


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings from ``path`` (or ``$LIFELONG_CONFIG_FILE``), the environment and ``overrides``.

    Raises
    ------
    ConfigError
        The file is missing or not a YAML mapping, or a key is unknown or invalid.
    """
    if path is None and os.environ.get(CONFIG_FILE_ENV):
        path = os.environ[CONFIG_FILE_ENV]
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level, not {type(loaded).__name__}")
        data = loaded
    unknown = _unknown_env_keys()
    if unknown:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(f"{n}: unknown setting" for n in unknown))
    token = _yaml_data.set(data)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    except (SettingsError, ValueError) as exc:
        # pydantic-settings could not decode an environment variable (e.g. bad JSON).
        raise ConfigError(f"invalid configuration: {exc}") from exc
    finally:
        _yaml_data.reset(token)
    if path is not None:
        settings._config_file = Path(path)
        settings._file_secrets = _secrets_in(data)
    return settings


#: Settings whose values are secrets, as (section, key).
_SECRET_KEYS = (("api", "token"), ("kafka", "sasl_plain_password"), ("kafka", "ssl_password"))


def _secrets_in(data: dict[str, Any]) -> tuple[str, ...]:
    """Dotted names of the secrets a config file's mapping sets (a database URL counts when it has a password)."""
    found = [f"{section}.{key}" for section, key in _SECRET_KEYS
             if isinstance(data.get(section), dict) and data[section].get(key)]
    url = data.get("database", {}).get("url") if isinstance(data.get("database"), dict) else None
    if isinstance(url, str):
        try:
            if make_url(url).password:
                found.append("database.url")
        except Exception:  # noqa: BLE001 - an unparseable URL was already reported by validation
            pass
    return tuple(found)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain JSON-able data, secrets shown as ``**********``."""
    dumped = json.loads(settings.model_dump_json(by_alias=True))
    dumped["database"]["url"] = make_url(settings.database_url).render_as_string(hide_password=True)
    return dumped
