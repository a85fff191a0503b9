"""Private modes for what lifelong creates, and warnings naming the fix for what others can read."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import text

from daemon.config import load_settings
from daemon.file_safety import permission_warnings
from storage.artifacts import ArtifactStore
from storage.engine import make_engine


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _config(tmp_path: Path, body: str, mode: int) -> Path:
    path = tmp_path / "lifelong.yaml"
    path.write_text(body, encoding="utf-8")
    path.chmod(mode)
    return path


def test_a_shared_config_file_with_secrets_is_named_with_its_fix(tmp_path: Path) -> None:
    path = _config(tmp_path, f"data_dir: {tmp_path / 'data'}\napi:\n  token: s3cret\nkafka:\n"
                             "  sasl_plain_password: pw\ndatabase:\n  url: postgresql://u:pw@db/x\n", 0o644)
    settings = load_settings(path)
    assert settings.file_secrets == ("api.token", "kafka.sasl_plain_password", "database.url")
    [warning] = permission_warnings(settings)
    assert str(path) in warning and "mode 0644" in warning and f"chmod 600 {path}" in warning
    assert "api.token, kafka.sasl_plain_password, database.url" in warning
    assert "s3cret" not in warning and "pw" not in warning.replace(str(path), "")


def test_a_private_config_file_or_one_without_secrets_is_fine(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert permission_warnings(load_settings(_config(tmp_path, f"data_dir: {data}\napi:\n  token: s\n", 0o600))) == []
    no_secrets = load_settings(_config(tmp_path, f"data_dir: {data}\ndatabase:\n  url: postgresql://u@db/x\n", 0o644))
    assert no_secrets.file_secrets == () and permission_warnings(no_secrets) == []


def test_the_database_and_model_store_are_created_owner_only(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "lifelong.db"
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
        assert _mode(database.with_name("lifelong.db-wal")) == 0o600  # SQLite copies the database's mode
    engine.dispose()
    assert (_mode(database.parent), _mode(database)) == (0o700, 0o600)
    store = ArtifactStore(tmp_path / "models")
    assert _mode(store.incoming_dir()) == 0o700 and _mode(tmp_path / "models") == 0o700


def test_shared_data_files_made_by_an_older_version_are_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "lifelong.db").touch(mode=0o644)
    (data / "lifelong.db").chmod(0o644)
    warnings = permission_warnings(load_settings(data_dir=data))
    assert len(warnings) == 2
    assert f"data directory {data} is accessible beyond its owner (mode 0755): run `chmod 700 {data}`" in warnings
    assert f"run `chmod 600 {data / 'lifelong.db'}`" in warnings[1]
