from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import ConfigError, load_settings, masked_dump


class TestLoadSettings:
    def test_load_settings_defaults_use_embedded_broker_and_sqlite_in_data_dir(self) -> None:
        settings = load_settings()
        assert settings.kafka.embedded
        assert settings.database_url == "sqlite:///lifelong-data/lifelong.db"

    def test_load_settings_reads_yaml(self, tmp_path: Path) -> None:
        file = tmp_path / "c.yaml"
        file.write_text("kafka:\n  bootstrap_servers: [k1:9092, k2:9092]\n  topics: [a, b]\ningest:\n  heldout_fraction: 0.2\n")
        settings = load_settings(file)
        assert settings.kafka.bootstrap_servers == ["k1:9092", "k2:9092"]
        assert settings.kafka.topics == ["a", "b"]
        assert settings.ingest.heldout_fraction == 0.2

    def test_load_settings_environment_overrides_yaml(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        file = tmp_path / "c.yaml"
        file.write_text("ingest:\n  max_text_chars: 100\n")
        monkeypatch.setenv("LIFELONG_INGEST__MAX_TEXT_CHARS", "200")
        monkeypatch.setenv("LIFELONG_KAFKA__TOPICS", "x,y")
        settings = load_settings(file)
        assert settings.ingest.max_text_chars == 200
        assert settings.kafka.topics == ["x", "y"]

    def test_load_settings_unknown_yaml_key_names_the_key(self, tmp_path: Path) -> None:
        file = tmp_path / "c.yaml"
        file.write_text("kafka:\n  topicz: [a]\n")
        with pytest.raises(ConfigError, match=r"kafka\.topicz: Extra inputs are not permitted"):
            load_settings(file)

    def test_load_settings_unknown_top_level_key_names_the_key(self, tmp_path: Path) -> None:
        file = tmp_path / "c.yaml"
        file.write_text("kafak: {}\n")
        with pytest.raises(ConfigError, match=r"kafak: Extra inputs are not permitted"):
            load_settings(file)

    def test_load_settings_unknown_environment_variable_names_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LIFELONG_INGEST__MAX_TEXT", "5")
        with pytest.raises(ConfigError, match="LIFELONG_INGEST__MAX_TEXT: unknown setting"):
            load_settings()

    def test_load_settings_wrong_type_names_the_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LIFELONG_INGEST__MAX_TEXT_CHARS", "lots")
        with pytest.raises(ConfigError, match=r"ingest\.max_text_chars: Input should be a valid integer"):
            load_settings()

    def test_load_settings_out_of_range_value_names_the_key(self, tmp_path: Path) -> None:
        file = tmp_path / "c.yaml"
        file.write_text("ingest:\n  heldout_fraction: 1.5\n")
        with pytest.raises(ConfigError, match=r"ingest\.heldout_fraction: Input should be less than 1"):
            load_settings(file)

    def test_load_settings_rejects_unknown_database_scheme(self) -> None:
        with pytest.raises(ConfigError, match=r"database\.url: .*unsupported database URL scheme 'mysql'"):
            load_settings(database={"url": "mysql://x/y"})

    def test_load_settings_sasl_without_mechanism_is_rejected(self) -> None:
        with pytest.raises(ConfigError, match="sasl_mechanism is required"):
            load_settings(kafka={"security_protocol": "SASL_SSL"})

    def test_load_settings_missing_file_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot read config file .*nope.yaml"):
            load_settings(tmp_path / "nope.yaml")

    def test_load_settings_non_mapping_yaml_is_rejected(self, tmp_path: Path) -> None:
        file = tmp_path / "c.yaml"
        file.write_text("- a\n- b\n")
        with pytest.raises(ConfigError, match="must hold a mapping at the top level, not list"):
            load_settings(file)

    def test_load_settings_reads_file_named_by_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        file = tmp_path / "c.yaml"
        file.write_text("kafka:\n  group_id: from-env-file\n")
        monkeypatch.setenv("LIFELONG_CONFIG_FILE", str(file))
        assert load_settings().kafka.group_id == "from-env-file"


class TestKafkaClientOptions:
    def test_security_settings_pass_through_to_kafka_python(self) -> None:
        settings = load_settings(kafka={
            "bootstrap_servers": ["k:9093"], "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "svc", "sasl_plain_password": "s3cret", "ssl_cafile": "/etc/ca.pem",
        })
        assert settings.kafka.client_security_options() == {
            "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "svc",
            "sasl_plain_password": "s3cret", "ssl_cafile": "/etc/ca.pem", "ssl_check_hostname": True,
        }


class TestMaskedDump:
    def test_masked_dump_hides_secrets_and_database_password(self) -> None:
        settings = load_settings(
            kafka={"bootstrap_servers": ["k:1"], "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                   "sasl_plain_password": "kafka-secret"},
            database={"url": "postgresql+psycopg://user:db-secret@db/lifelong"},
            api={"token": "api-secret"},
        )
        dumped = masked_dump(settings)
        text = repr(dumped)
        assert "kafka-secret" not in text and "db-secret" not in text and "api-secret" not in text
        assert dumped["api"]["token"] == "**********"
        assert dumped["database"]["url"] == "postgresql+psycopg://user:***@db/lifelong"


class TestTrainingSettings:
    def test_unknown_strategy_lists_the_choices(self) -> None:
        with pytest.raises(ConfigError, match=r"training\.strategy\.name: unknown strategy 'magic'; "
                                              r"choose one of: naive, replay, ewc, lwf, si, agem, replay\+lwf"):
            load_settings(training={"strategy": {"name": "magic"}})

    def test_unknown_hyper_parameter_names_the_key(self) -> None:
        with pytest.raises(ConfigError, match=r"training\.strategy\.lamda: Extra inputs are not permitted"):
            load_settings(training={"strategy": {"lamda": 1.0}})

    def test_fixed_buffer_size_replaces_the_fraction(self) -> None:
        buffer = load_settings(training={"buffer": {"size": 450}}).training.buffer.to_config()
        assert (buffer.size, buffer.fraction, buffer.min_size, buffer.max_size) == (450, None, 0, None)

    def test_bad_buffer_bounds_use_the_learners_message(self) -> None:
        with pytest.raises(ConfigError, match=r"max_size \(10\) must be >= min_size \(20\)"):
            load_settings(training={"buffer": {"min_size": 20, "max_size": 10}})


def test_reading_configuration_does_not_import_torch() -> None:
    """CLI commands like ``status`` and ``config show`` must start fast."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import sys, daemon.control.cli; print('torch' in sys.modules, 'avalanche' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "False False"


class TestScheduleSettings:
    @pytest.mark.parametrize(("schedule", "message"), [
        ({"cron": "61 * * * *"}, r"schedule\.cron: '61 \* \* \* \*' is not a valid 5-field crontab expression"),
        ({"cron": "every day"}, r"schedule\.cron: 'every day' is not a valid 5-field crontab expression"),
        ({"cron": "0 3 * * *", "interval_s": 60}, r"schedule: set interval_s or cron, not both"),
        ({"interval_s": 0}, r"schedule\.interval_s: Input should be greater than 0"),
        ({"volume_threshold": -5}, r"schedule\.volume_threshold: Input should be greater than or equal to 1"),
        ({"min_gap_s": -1}, r"schedule\.min_gap_s: Input should be greater than or equal to 0"),
        ({"timezone": "Mars/Olympus"}, r"schedule\.timezone: unknown time zone 'Mars/Olympus'"),
    ])
    def test_schedule_that_cannot_work_names_the_key(self, schedule: dict, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            load_settings(schedule=schedule)

    def test_schedule_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LIFELONG_SCHEDULE__CRON", "30 2 * * 1-5")
        monkeypatch.setenv("LIFELONG_SCHEDULE__VOLUME_THRESHOLD", "500")
        monkeypatch.setenv("LIFELONG_TRAINING__ON_SHUTDOWN", "finish")
        settings = load_settings()
        assert (settings.schedule.cron, settings.schedule.volume_threshold) == ("30 2 * * 1-5", 500)
        assert settings.training.on_shutdown == "finish"

    def test_on_shutdown_only_knows_cancel_and_finish(self) -> None:
        with pytest.raises(ConfigError, match=r"training\.on_shutdown: Input should be 'cancel' or 'finish'"):
            load_settings(training={"on_shutdown": "wait"})
