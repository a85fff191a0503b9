"""The artifact store: one directory per model version, checksummed and published atomically.

A training worker writes a candidate directory (weights as safetensors, ``config.json``,
tokenizer files, ``labels.json``, learner state); :meth:`ArtifactStore.publish` checks it,
records the SHA-256 of every file in ``manifest.json`` and renames it to ``<root>/<version>``.
The store does not care which files a version has: a LoRA version (``training.adapter:
lora``) holds ``adapter.safetensors`` and ``adapter.json`` instead of the weights and the
tokenizer, and is hashed and verified file by file the same way. Its base model lives
outside the store; ``adapter.json`` (covered by the checksums) and the lineage name it by
fingerprint, and loading refuses a base whose fingerprint differs (``learners.lora``).

Why it is built this way:

- **Atomic rename.** A version appears all at once or not at all, so a reader (the
  predictor, a rollback) never sees a half-written version, and a crash mid-publish leaves
  at worst a leftover in ``<root>/.incoming`` (see :meth:`ArtifactStore.remove_incoming`).
- **Checksums.** A tampered or corrupted artifact must not be served: :meth:`ArtifactStore.verify`
  re-hashes every file before a model is loaded, and the manifest's ``checksum`` (a hash
  of the file list) is the artifact's identity, stored in the database and sent in
  promotion events, so a manifest rewritten to match altered files is caught too.
- **No pickles.** Loading a pickle (``torch.load``, ``*.bin`` checkpoints) executes code
  from the file, so pickles are refused when publishing and again when verifying.

Layout::

    <root>/v0001/            a published version (manifest.json + the model files)
    <root>/.incoming/        where workers write candidates (same filesystem as the versions)
    <root>/.trash/           versions being deleted by prune

Errors::

    StorageError                     (storage.errors)
     └── ArtifactError               an artifact is invalid, corrupt, refused or cannot be written
          └── ArtifactNotFound       no such published version

The store assumes a single writer (the daemon); any number of readers is fine.

>>> files = {"config.json": "0" * 64, "model.safetensors": "f" * 64}
>>> files_checksum(files) == files_checksum(dict(reversed(files.items())))
True
>>> files_checksum({})
'44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from storage.errors import StorageError

__all__ = [
    "MANIFEST_FILE",
    "PICKLE_SUFFIXES",
    "VERSION_NAME_PATTERN",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactStore",
    "Manifest",
    "files_checksum",
]

logger = logging.getLogger(__name__)

VERSION_NAME_PATTERN = r"^v[0-9]{4,9}$"
"""Published versions are named ``v0001``, ``v0002``, ... by the daemon; anything else is refused."""

MANIFEST_FILE = "manifest.json"
"""Name of the manifest inside a version directory; it lists every other file."""

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})
"""File suffixes (compared case-insensitively) that are refused outright: their usual loaders unpickle."""

MANIFEST_FORMAT = 1
_VERSION_RE = re.compile(VERSION_NAME_PATTERN)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_HEAD = 16
_INCOMING = ".incoming"
_TRASH = ".trash"
# A safetensors header is JSON; safetensors itself refuses headers over 100 MB.
_MAX_SAFETENSORS_HEADER = 100_000_000


class ArtifactError(StorageError):
    """An artifact is invalid, corrupt, refused or cannot be written; the message names the version and the file."""


class ArtifactNotFound(ArtifactError):
    """No published version has this name."""


def files_checksum(files: Mapping[str, str]) -> str:
    """The artifact's identity: SHA-256 hex of the canonical JSON of ``files``.

    Canonical means sorted keys, no spaces and ASCII escapes, so the same files give
    the same checksum whatever the order they were listed in.
    """
    canonical = json.dumps(dict(files), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _utcnow_iso() -> str:
    return datetime.now(UTC).isoformat()


def _frozen_json(value: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """A read-only deep copy of ``value``; ValueError/TypeError unless it is a JSON object."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        copied = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        error = TypeError if isinstance(exc, TypeError) else ValueError
        raise error(f"{what} is not JSON-serializable: {exc}") from exc
    return MappingProxyType(copied)


def _check_relative_path(path: object) -> str:
    """Return ``path`` if it is a normalised relative POSIX path a manifest may list."""
    if not isinstance(path, str):
        raise TypeError(f"file paths must be str, got {type(path).__name__}")
    pure = PurePosixPath(path)
    if (
        not path
        or "\x00" in path
        or pure.is_absolute()
        or str(pure) != path
        or any(part in {".", ".."} for part in pure.parts)
    ):
        raise ValueError(f"file path {path!r} is not a normalised relative path")
    if path == MANIFEST_FILE:
        raise ValueError(f"the manifest cannot list {MANIFEST_FILE} itself")
    return path


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` records about one published version.

    Parameters
    ----------
    version
        The version name, e.g. ``v0003``.
    files
        Relative POSIX path to SHA-256 hex for every file except ``manifest.json``.
    checksum
        :func:`files_checksum` of ``files``: the artifact's identity.
    lineage
        Parent version, strategy, hyper-parameters, data watermark, ...; opaque JSON here.
    metrics
        Evaluation results; opaque JSON here.
    created_at
        ISO-8601 UTC time of publication.

    Raises
    ------
    ValueError, TypeError
        Any field is malformed, or ``checksum`` does not match ``files``. A ``Manifest``
        that exists is internally consistent.
    """

    version: str
    files: Mapping[str, str]
    checksum: str
    lineage: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=_utcnow_iso)

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not _VERSION_RE.fullmatch(self.version):
            raise ValueError(f"invalid version name {self.version!r}")
        if not isinstance(self.files, Mapping):
            raise TypeError(f"files must be a mapping, got {type(self.files).__name__}")
        files: dict[str, str] = {}
        for path, digest in sorted(self.files.items()):
            _check_relative_path(path)
            if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
                raise ValueError(f"file {path!r} has no valid SHA-256 hex digest: {digest!r}")
            files[path] = digest
        object.__setattr__(self, "files", MappingProxyType(files))
        if not isinstance(self.checksum, str) or self.checksum != files_checksum(files):
            raise ValueError("checksum does not match the file list")
        object.__setattr__(self, "lineage", _frozen_json(self.lineage, "lineage"))
        object.__setattr__(self, "metrics", _frozen_json(self.metrics, "metrics"))
        if not isinstance(self.created_at, str):
            raise TypeError(f"created_at must be an ISO-8601 str, got {type(self.created_at).__name__}")
        try:
            created = datetime.fromisoformat(self.created_at)
        except ValueError as exc:
            raise ValueError(f"created_at {self.created_at!r} is not ISO-8601") from exc
        if created.utcoffset() is None or created.utcoffset().total_seconds() != 0:
            raise ValueError(f"created_at {self.created_at!r} is not UTC")

    @classmethod
    def build(
        cls,
        version: str,
        files: Mapping[str, str],
        *,
        lineage: Mapping[str, Any],
        metrics: Mapping[str, Any],
        created_at: str | None = None,
    ) -> Manifest:
        """A manifest for ``files`` with the checksum computed and ``created_at`` now unless given."""
        return cls(
            version=version,
            files=files,
            checksum=files_checksum(files),
            lineage=lineage,
            metrics=metrics,
            created_at=created_at if created_at is not None else _utcnow_iso(),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: the content of ``manifest.json``."""
        return {
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "created_at": self.created_at,
            "checksum": self.checksum,
            "files": dict(self.files),
            "lineage": json.loads(json.dumps(dict(self.lineage))),
            "metrics": json.loads(json.dumps(dict(self.metrics))),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Rebuild a manifest from :meth:`to_dict` output.

        Raises
        ------
        ValueError, TypeError
            Keys are missing or unknown, the format is unsupported, or a field is malformed.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a manifest must be a JSON object, got {type(data).__name__}")
        expected = {"format", "version", "created_at", "checksum", "files", "lineage", "metrics"}
        missing = sorted(expected - data.keys())
        if missing:
            raise ValueError(f"missing keys {missing}")
        unknown = sorted(str(key) for key in data.keys() - expected)
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        if data["format"] != MANIFEST_FORMAT:
            raise ValueError(f"unsupported manifest format {data['format']!r} (expected {MANIFEST_FORMAT})")
        return cls(
            version=data["version"],
            files=data["files"],
            checksum=data["checksum"],
            lineage=data["lineage"],
            metrics=data["metrics"],
            created_at=data["created_at"],
        )


def _version_number(name: str) -> tuple[int, str]:
    return int(name[1:]), name


def _describe_os_error(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _list_files(directory: Path) -> tuple[list[str], list[str]]:
    """Relative POSIX paths of the regular files under ``directory`` (top-level manifest excluded).

    Returns the files and, separately, one problem per entry that is not a regular file
    or directory (symlinks included: following one could read outside the artifact).
    """
    files: list[str] = []
    problems: list[str] = []
    pending = [(directory, PurePosixPath())]
    while pending:
        current, prefix = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                relative = str(prefix / entry.name)
                try:
                    relative.encode("utf-8")
                except UnicodeEncodeError:
                    problems.append(f"{relative!r} has a name that is not valid UTF-8")
                    continue
                if entry.is_symlink():
                    problems.append(f"{relative} is a symlink")
                elif entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), prefix / entry.name))
                elif not entry.is_file(follow_symlinks=False):
                    problems.append(f"{relative} is not a regular file")
                elif relative != MANIFEST_FILE:
                    files.append(relative)
    return sorted(files), sorted(problems)


def _open_regular(path: Path) -> int:
    """Open ``path`` read-only without following a symlink or blocking on a FIFO."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


def _looks_like_safetensors(path: Path, head: bytes, size: int) -> bool:
    """Whether the file parses as a safetensors header (an 8-byte length, then a JSON object).

    A safetensors file whose header is, say, 640 bytes long starts with ``80 02``, the
    same bytes as a protocol-2 pickle; parsing the header tells the two apart.
    """
    if len(head) < 9 or head[8:9] != b"{":
        return False
    length = int.from_bytes(head[:8], "little")
    if length > min(size - 8, _MAX_SAFETENSORS_HEADER):
        return False
    with path.open("rb") as stream:
        stream.seek(8)
        header = stream.read(length)
    try:
        return isinstance(json.loads(header.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def _pickle_reason(path: Path, relative: str, head: bytes, size: int) -> str | None:
    """Why the file is a pickle, or None. ``head`` holds its first bytes."""
    suffix = PurePosixPath(relative).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return f"suffix {suffix}"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        if suffix == ".safetensors" and _looks_like_safetensors(path, head, size):
            return None
        return f"pickle protocol {head[1]} header"
    if head.startswith(b"PK\x03\x04"):
        # torch.save's default format: a zip archive holding data.pkl.
        try:
            with zipfile.ZipFile(path) as archive:
                pickled = [name for name in archive.namelist() if name.lower().endswith((".pkl", ".pickle"))]
        except (zipfile.BadZipFile, OSError):
            return None
        if pickled:
            return f"zip archive holding {pickled[0]}"
    return None


def _scan(path: Path, relative: str, *, sync: bool = False) -> tuple[str, str | None]:
    """SHA-256 hex of the file, read in chunks, and why it is a pickle (or None). OSError passes through."""
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as stream:
        digest = hashlib.sha256()
        head = b""
        size = 0
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while True:
            count = stream.readinto(buffer)
            if not count:
                break
            if size < _HEAD:
                head += bytes(view[: min(count, _HEAD - size)])
            size += count
            digest.update(view[:count])
        if sync:
            os.fsync(stream.fileno())
    return digest.hexdigest(), _pickle_reason(path, relative, head, size)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    """fsync every directory under ``directory`` (files are synced as they are hashed)."""
    for current, _dirs, _files in os.walk(directory):
        _fsync_dir(Path(current))


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class ArtifactStore:
    """Published model versions under ``root``, one directory each.

    Nothing is created until it is needed: constructing a store touches no disk.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    def path_for(self, version: str) -> Path:
        """The directory of ``version``, whether or not it exists.

        Raises
        ------
        ArtifactError
            ``version`` is not a version name; the pattern admits no separators or dots,
            so the path never leaves ``root``.
        TypeError
            ``version`` is not a str.
        """
        if not isinstance(version, str):
            raise TypeError(f"version must be a str, got {type(version).__name__}")
        if not _VERSION_RE.fullmatch(version):
            raise ArtifactError(
                f"invalid version name {version!r}: expected 'v' and 4 to 9 digits, e.g. 'v0001'"
            )
        return self.root / version

    def incoming_dir(self) -> Path:
        """``root/.incoming``, created on demand.

        A worker writing its candidate here makes :meth:`publish` a same-filesystem rename.
        """
        incoming = self.root / _INCOMING
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # models are trained on private data
        incoming.mkdir(mode=0o700, exist_ok=True)
        return incoming

    def publish(
        self,
        source: Path,
        version: str,
        *,
        lineage: Mapping[str, Any],
        metrics: Mapping[str, Any],
    ) -> Manifest:
        """Move the candidate directory ``source`` into the store as ``version``.

        Steps: refuse pickles, symlinks and anything that is not a regular file; hash
        every file; write ``manifest.json`` into ``source``; fsync the files and the
        directories; rename ``source`` to ``root/version``. The rename is what makes the
        version appear, complete, in one step. If any step fails, ``root/version`` does
        not exist afterwards and ``source`` is left as it was (minus a ``manifest.json``
        this call wrote). On success ``source`` no longer exists: it has been moved.

        When ``source`` is on another filesystem the rename is impossible; the files are
        then copied into ``root/.incoming``, re-hashed against the manifest, and renamed
        from there, and ``source`` is removed afterwards.

        Raises
        ------
        ArtifactError
            Invalid version name, version already published, ``source`` missing, empty or
            holding a pickle / symlink / special file, or an I/O error.
        ValueError, TypeError
            ``lineage`` or ``metrics`` is not a JSON object (NaN and infinities included).
        """
        target = self.path_for(version)
        source = Path(source)
        lineage = _frozen_json(lineage, "lineage")
        metrics = _frozen_json(metrics, "metrics")
        self._check_source(source, version)
        if os.path.lexists(target):
            raise ArtifactError(f"cannot publish {version}: {version} already exists")

        try:
            files, problems = _list_files(source)
        except OSError as exc:
            raise ArtifactError(f"cannot publish {version}: cannot list {source}: {_describe_os_error(exc)}") from exc
        hashes: dict[str, str] = {}
        for relative in files:
            try:
                digest, reason = _scan(source / relative, relative, sync=True)
            except OSError as exc:
                raise ArtifactError(
                    f"cannot publish {version}: cannot read {relative}: {_describe_os_error(exc)}"
                ) from exc
            if reason is not None:
                problems.append(f"{relative} is a pickle ({reason})")
            hashes[relative] = digest
        if problems:
            raise ArtifactError(f"cannot publish {version}: " + "; ".join(sorted(problems)))
        if not files:
            raise ArtifactError(f"cannot publish {version}: {source} holds no files")

        manifest = Manifest.build(version, hashes, lineage=lineage, metrics=metrics)
        manifest_path = source / MANIFEST_FILE
        try:
            self._write_manifest(manifest_path, manifest, version)
            moved_from = self._move_into_place(source, target, manifest)
        except BaseException:
            manifest_path.unlink(missing_ok=True)
            raise

        for directory in {self.root, moved_from}:
            try:
                _fsync_dir(directory)
            except OSError as exc:
                logger.warning("published %s but could not fsync %s: %s", version, directory, exc)
        logger.info("published %s: %d files, checksum %s", version, len(hashes), manifest.checksum)
        return manifest

    def verify(self, version: str, *, expected_checksum: str | None = None) -> Manifest:
        """Re-hash every file of ``version`` against its manifest and return the manifest.

        Call before loading a model: a tampered or corrupted artifact must not be served.
        Pass the checksum stored in the database as ``expected_checksum`` to also catch a
        manifest rewritten to match altered files.

        Raises
        ------
        ArtifactNotFound
            ``version`` is not published.
        ArtifactError
            The manifest is missing or malformed, or the files differ from it; the message
            lists every problem, e.g. ``artifact v0003 failed verification: model.safetensors
            checksum mismatch``.
        """
        manifest = self.read_manifest(version)
        directory = self.path_for(version)
        try:
            present, problems = _list_files(directory)
        except OSError as exc:
            raise ArtifactError(
                f"artifact {version} failed verification: cannot list files: {_describe_os_error(exc)}"
            ) from exc
        present_set = set(present)
        for relative in sorted(present_set | manifest.files.keys()):
            if relative not in present_set:
                problems.append(f"missing file {relative}")
                continue
            try:
                digest, reason = _scan(directory / relative, relative)
            except OSError as exc:
                problems.append(f"cannot read {relative}: {_describe_os_error(exc)}")
                continue
            if reason is not None:
                problems.append(f"{relative} is a pickle ({reason})")
            elif relative not in manifest.files:
                problems.append(f"unexpected file {relative} not in manifest")
            elif digest != manifest.files[relative]:
                problems.append(f"{relative} checksum mismatch")
        if expected_checksum is not None and manifest.checksum != expected_checksum:
            problems.append(f"checksum {manifest.checksum} is not the expected {expected_checksum}")
        if problems:
            raise ArtifactError(f"artifact {version} failed verification: " + "; ".join(problems))
        logger.debug("verified %s: %d files", version, len(manifest.files))
        return manifest

    def read_manifest(self, version: str) -> Manifest:
        """The manifest of ``version`` without re-hashing its files (a cheap listing).

        Raises
        ------
        ArtifactNotFound
            ``version`` is not published.
        ArtifactError
            ``manifest.json`` is missing, not JSON, inconsistent, or names another version.
        """
        directory = self.path_for(version)
        if not directory.is_dir() or directory.is_symlink():
            raise ArtifactNotFound(f"artifact {version} not found in {self.root}")
        try:
            text = (directory / MANIFEST_FILE).read_bytes().decode("utf-8")
        except FileNotFoundError as exc:
            raise ArtifactError(f"artifact {version} has no {MANIFEST_FILE}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"artifact {version} has an unreadable {MANIFEST_FILE}: {exc}") from exc
        try:
            manifest = Manifest.from_dict(json.loads(text))
        except (ValueError, TypeError) as exc:
            raise ArtifactError(f"artifact {version} has a malformed {MANIFEST_FILE}: {exc}") from exc
        if manifest.version != version:
            raise ArtifactError(
                f"artifact {version} has a malformed {MANIFEST_FILE}: it names version {manifest.version!r}"
            )
        return manifest

    def versions(self) -> list[str]:
        """Published version names in version order (``v0002`` before ``v0010`` before ``v10000``)."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        names = [
            entry.name
            for entry in entries
            if _VERSION_RE.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
        ]
        return sorted(names, key=_version_number)

    def prune(self, *, keep: Collection[str], retain: int) -> list[str]:
        """Delete published versions except ``keep`` and the newest ``retain``; return those deleted.

        Pass production and the previous production in ``keep`` so that a rollback target
        always survives. Each version is first renamed into ``root/.trash`` and then
        deleted, so a reader never sees a half-deleted version. ``.incoming`` is never
        touched.

        Raises
        ------
        ValueError
            ``retain`` is negative or ``keep`` holds something that is not a version name
            (a typo there would delete production).
        TypeError
            ``keep`` is a single str rather than a collection of names.
        ArtifactError
            A version could not be moved out of the store.
        """
        if isinstance(keep, str):
            raise TypeError("keep must be a collection of version names, not a str")
        if isinstance(retain, bool) or not isinstance(retain, int):
            raise TypeError(f"retain must be an int, got {type(retain).__name__}")
        if retain < 0:
            raise ValueError(f"retain must be >= 0, got {retain}")
        for name in keep:
            if not isinstance(name, str) or not _VERSION_RE.fullmatch(name):
                raise ValueError(f"keep holds an invalid version name {name!r}")
        published = self.versions()
        newest = set(published[len(published) - retain :]) if retain else set()
        doomed = [name for name in published if name not in newest and name not in keep]
        if not doomed:
            return []
        trash = self.root / _TRASH
        trash.mkdir(exist_ok=True)
        for leftover in list(trash.iterdir()):
            _remove_tree(leftover)
        deleted: list[str] = []
        for name in doomed:
            parked = trash / f"{name}-{secrets.token_hex(4)}"
            try:
                os.replace(self.root / name, parked)
            except OSError as exc:
                raise ArtifactError(f"cannot delete {name}: {_describe_os_error(exc)}") from exc
            deleted.append(name)
            try:
                shutil.rmtree(parked)
            except OSError as exc:
                logger.warning("pruned %s but could not remove %s: %s", name, parked, exc)
        logger.info("pruned %d versions: %s", len(deleted), ", ".join(deleted))
        return deleted

    def remove_incoming(self) -> list[Path]:
        """Remove leftovers in ``root/.incoming`` (and ``root/.trash``) after a crash; return them.

        Call only when no worker is writing a candidate, e.g. at start-up.
        """
        removed: list[Path] = []
        for area in (self.root / _INCOMING, self.root / _TRASH):
            try:
                entries = sorted(area.iterdir())
            except FileNotFoundError:
                continue
            for entry in entries:
                _remove_tree(entry)
                removed.append(entry)
        if removed:
            logger.info("removed %d leftovers: %s", len(removed), ", ".join(str(path) for path in removed))
        return removed

    def _check_source(self, source: Path, version: str) -> None:
        if source.is_symlink() or not source.is_dir():
            raise ArtifactError(f"cannot publish {version}: source {source} is not a directory")
        resolved = source.resolve()
        root = self.root.resolve()
        if resolved == root or root.is_relative_to(resolved):
            raise ArtifactError(f"cannot publish {version}: source {source} contains the store")
        if resolved.parent == root and _VERSION_RE.fullmatch(resolved.name):
            raise ArtifactError(f"cannot publish {version}: source {source} is already published")

    def _write_manifest(self, path: Path, manifest: Manifest, version: str) -> None:
        data = json.dumps(manifest.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
        try:
            with path.open("w", encoding="utf-8") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            _fsync_tree(path.parent)
        except OSError as exc:
            raise ArtifactError(
                f"cannot publish {version}: cannot write {MANIFEST_FILE}: {_describe_os_error(exc)}"
            ) from exc

    def _move_into_place(self, source: Path, target: Path, manifest: Manifest) -> Path:
        """Rename ``source`` to ``target``, copying via ``.incoming`` across filesystems.

        Returns the directory the version was renamed out of, to be fsynced.
        """
        version = manifest.version
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.path.lexists(target):
                raise ArtifactError(f"cannot publish {version}: {version} already exists")
            os.replace(source, target)
            return source.parent
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise ArtifactError(f"cannot publish {version}: {_describe_os_error(exc)}") from exc
        logger.info("publishing %s: %s is on another filesystem, copying", version, source)
        staging = self.incoming_dir() / f"{version}.publishing-{secrets.token_hex(4)}"
        try:
            shutil.copytree(source, staging, symlinks=True)
            copied, problems = _list_files(staging)
            if copied != sorted(manifest.files):
                problems.append("the copied file list differs from the source")
            for relative in copied:
                digest, _reason = _scan(staging / relative, relative, sync=True)
                if digest != manifest.files.get(relative):
                    problems.append(f"copied {relative} checksum mismatch")
            if problems:
                raise ArtifactError(f"cannot publish {version}: " + "; ".join(problems))
            _fsync_tree(staging)
            if os.path.lexists(target):
                raise ArtifactError(f"cannot publish {version}: {version} already exists")
            os.replace(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ArtifactError(f"cannot publish {version}: {_describe_os_error(exc)}") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            shutil.rmtree(source)
        except OSError as exc:
            logger.warning("published %s but could not remove the source %s: %s", version, source, exc)
        return staging.parent
