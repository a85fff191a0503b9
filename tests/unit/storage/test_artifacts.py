from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from storage.artifacts import (
    MANIFEST_FILE,
    VERSION_NAME_PATTERN,
    ArtifactError,
    ArtifactNotFound,
    ArtifactStore,
    Manifest,
    files_checksum,
)
from storage.errors import StorageError


def safetensors_bytes(header_length: int | None = None) -> bytes:
    """A well-formed safetensors file; ``header_length`` pads the JSON header to that size."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    if header_length is not None:
        header = header + b" " * (header_length - len(header))
    return len(header).to_bytes(8, "little") + header + b"\x00\x00\x80?\x00\x00\x00@"


FAKE_FILES: dict[str, bytes] = {
    "model.safetensors": safetensors_bytes(),
    "config.json": b'{"model_type": "bert", "hidden_size": 8}',
    "tokenizer.json": b'{"version": "1.0", "model": {"type": "WordPiece"}}',
    "tokenizer_config.json": b'{"do_lower_case": true}',
    "special_tokens_map.json": b'{"cls_token": "[CLS]"}',
    "vocab.txt": b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n",
    "labels.json": b'["billing", "shipping"]',
    "classifier.json": b'{"pooling": "mean", "max_length": 64}',
    "learner_state.safetensors": safetensors_bytes(),
    "learner_state.json": b'{"strategy": "ewc"}',
    "extra/notes.txt": b"nested files are artifacts too\n",
}
LINEAGE = {"parent": "v0001", "strategy": "ewc", "hyper_parameters": {"lr": 0.0001}, "watermark": {"0": 41}}
METRICS = {"macro_f1": 0.91, "per_label_f1": {"billing": 0.9, "shipping": 0.92}}


def write_candidate(directory: Path, files: dict[str, bytes] | None = None) -> Path:
    for relative, content in (FAKE_FILES if files is None else files).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return directory


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def candidate(store: ArtifactStore) -> Path:
    return write_candidate(store.incoming_dir() / "candidate")


@pytest.fixture
def published(store: ArtifactStore, candidate: Path) -> Manifest:
    return store.publish(candidate, "v0003", lineage=LINEAGE, metrics=METRICS)


class TestInit:
    def test_init_creates_nothing(self, tmp_path: Path) -> None:
        store = ArtifactStore(tmp_path / "artifacts")
        assert store.root == tmp_path / "artifacts"
        assert not store.root.exists()
        assert store.versions() == []
        assert store.remove_incoming() == []

    def test_error_is_a_storage_error(self) -> None:
        assert issubclass(ArtifactError, StorageError)
        assert issubclass(ArtifactNotFound, ArtifactError)


class TestPathFor:
    @pytest.mark.parametrize("version", ["v0001", "v0042", "v123456789"])
    def test_path_for_valid_name_is_under_root(self, store: ArtifactStore, version: str) -> None:
        assert store.path_for(version) == store.root / version

    @pytest.mark.parametrize(
        "version",
        ["../x", "v1", "V0001", "v0001/..", "", "/abs/v0001", "/tmp", "v0001\n", "v1234567890", "v00a1", " v0001"],
    )
    def test_path_for_invalid_name_is_refused(self, store: ArtifactStore, version: str) -> None:
        with pytest.raises(ArtifactError) as info:
            store.path_for(version)
        assert str(info.value) == f"invalid version name {version!r}: expected 'v' and 4 to 9 digits, e.g. 'v0001'"

    def test_path_for_non_str_is_a_type_error(self, store: ArtifactStore) -> None:
        with pytest.raises(TypeError, match="^version must be a str, got int$"):
            store.path_for(1)  # type: ignore[arg-type]

    def test_pattern_is_the_documented_one(self) -> None:
        assert VERSION_NAME_PATTERN == r"^v[0-9]{4,9}$"


class TestIncomingDir:
    def test_incoming_dir_is_created_on_demand_under_root(self, store: ArtifactStore) -> None:
        incoming = store.incoming_dir()
        assert incoming == store.root / ".incoming"
        assert incoming.is_dir()
        assert store.incoming_dir() == incoming
        assert store.versions() == []


class TestPublishRoundTrip:
    def test_publish_then_verify_round_trip(self, store: ArtifactStore, candidate: Path) -> None:
        manifest = store.publish(candidate, "v0003", lineage=LINEAGE, metrics=METRICS)

        assert manifest.version == "v0003"
        assert dict(manifest.files) == {name: sha256(content) for name, content in FAKE_FILES.items()}
        assert manifest.checksum == files_checksum(manifest.files)
        canonical = json.dumps(dict(sorted(manifest.files.items())), separators=(",", ":")).encode()
        assert manifest.checksum == hashlib.sha256(canonical).hexdigest()
        assert manifest.lineage == LINEAGE
        assert manifest.metrics == METRICS
        created = datetime.fromisoformat(manifest.created_at)
        assert created.utcoffset() == timedelta(0)

        target = store.root / "v0003"
        assert not candidate.exists()
        assert tree(target) == {**FAKE_FILES, MANIFEST_FILE: (target / MANIFEST_FILE).read_bytes()}
        assert json.loads((target / MANIFEST_FILE).read_text()) == manifest.to_dict()
        assert store.verify("v0003") == manifest
        assert store.verify("v0003", expected_checksum=manifest.checksum) == manifest
        assert store.read_manifest("v0003") == manifest
        assert store.versions() == ["v0003"]

    def test_publish_checksum_depends_only_on_the_files(self, store: ArtifactStore, candidate: Path) -> None:
        first = store.publish(candidate, "v0001", lineage=LINEAGE, metrics=METRICS)
        second = store.publish(
            write_candidate(store.incoming_dir() / "again"), "v0002", lineage={"parent": "v0001"}, metrics={}
        )
        assert first.checksum == second.checksum
        changed = dict(FAKE_FILES, **{"labels.json": b'["billing", "shipping", "returns"]'})
        third = store.publish(write_candidate(store.incoming_dir() / "third", changed), "v0003", lineage={}, metrics={})
        assert third.checksum != first.checksum

    def test_publish_replaces_a_stale_manifest_copied_from_the_parent(
        self, store: ArtifactStore, candidate: Path
    ) -> None:
        (candidate / MANIFEST_FILE).write_text('{"stale": true}')
        manifest = store.publish(candidate, "v0004", lineage={}, metrics={})
        assert MANIFEST_FILE not in manifest.files
        assert store.verify("v0004") == manifest

    def test_publish_accepts_safetensors_whose_header_length_looks_like_a_pickle(
        self, store: ArtifactStore, candidate: Path
    ) -> None:
        content = safetensors_bytes(header_length=0x280)
        assert content[:2] == b"\x80\x02"
        (candidate / "learner_state.safetensors").write_bytes(content)
        store.publish(candidate, "v0001", lineage={}, metrics={})
        assert store.verify("v0001").files["learner_state.safetensors"] == sha256(content)

    def test_publish_from_another_filesystem_copies_then_removes_the_source(
        self, store: ArtifactStore, candidate: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_replace = os.replace
        calls: list[tuple[str, str]] = []

        def replace(src: str | Path, dst: str | Path) -> None:
            calls.append((str(src), str(dst)))
            if len(calls) == 1:
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        manifest = store.publish(candidate, "v0005", lineage={}, metrics={})
        assert len(calls) == 2
        assert not candidate.exists()
        assert store.verify("v0005") == manifest
        assert list(store.incoming_dir().iterdir()) == []


class TestPublishRefusesPickles:
    @pytest.mark.parametrize("name", ["weights.bin", "model.pt", "m.pth", "x.pkl", "y.pickle", "z.ckpt", "e.joblib",
                                      "extra/OPTIMIZER.PT"])
    def test_publish_refuses_pickle_suffix(self, store: ArtifactStore, candidate: Path, name: str) -> None:
        write_candidate(candidate, {name: b"not really a pickle"})
        before = tree(candidate)
        suffix = Path(name).suffix.lower()
        with pytest.raises(ArtifactError) as info:
            store.publish(candidate, "v0003", lineage={}, metrics={})
        assert str(info.value) == f"cannot publish v0003: {name} is a pickle (suffix {suffix})"
        assert not store.path_for("v0003").exists()
        assert tree(candidate) == before

    @pytest.mark.parametrize("protocol", [2, 3, 4, 5])
    def test_publish_refuses_pickle_magic_bytes(self, store: ArtifactStore, candidate: Path, protocol: int) -> None:
        (candidate / "model.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=protocol))
        with pytest.raises(ArtifactError) as info:
            store.publish(candidate, "v0003", lineage={}, metrics={})
        assert str(info.value) == (
            f"cannot publish v0003: model.safetensors is a pickle (pickle protocol {protocol} header)"
        )
        assert not store.path_for("v0003").exists()
        assert not (candidate / MANIFEST_FILE).exists()

    def test_publish_refuses_a_torch_zip_checkpoint(self, store: ArtifactStore, candidate: Path) -> None:
        with zipfile.ZipFile(candidate / "weights.data", "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        with pytest.raises(ArtifactError) as info:
            store.publish(candidate, "v0003", lineage={}, metrics={})
        assert str(info.value) == (
            "cannot publish v0003: weights.data is a pickle (zip archive holding archive/data.pkl)"
        )

    def test_publish_lists_every_pickle(self, store: ArtifactStore, candidate: Path) -> None:
        write_candidate(candidate, {"b.pkl": b"x", "a.bin": b"y"})
        with pytest.raises(ArtifactError) as info:
            store.publish(candidate, "v0003", lineage={}, metrics={})
        assert str(info.value) == (
            "cannot publish v0003: a.bin is a pickle (suffix .bin); b.pkl is a pickle (suffix .pkl)"
        )


class TestPublishInvalidVersion:
    @pytest.mark.parametrize("version", ["../x", "v1", "V0001", "v0001/..", "", "/abs/v0001"])
    def test_publish_invalid_name_creates_nothing(self, tmp_path: Path, version: str) -> None:
        store = ArtifactStore(tmp_path / "sub" / "artifacts")
        source = write_candidate(tmp_path / "candidate")
        before = sorted(p for p in tmp_path.rglob("*"))
        with pytest.raises(ArtifactError, match="^invalid version name "):
            store.publish(source, version, lineage={}, metrics={})
        assert sorted(p for p in tmp_path.rglob("*")) == before
        assert not (tmp_path / "sub").exists()
        assert not Path("/abs").exists()


class TestPublishExisting:
    def test_publish_to_existing_version_is_refused_and_it_stays_untouched(
        self, store: ArtifactStore, published: Manifest
    ) -> None:
        existing = tree(store.path_for("v0003"))
        other = write_candidate(store.incoming_dir() / "other", {"model.safetensors": safetensors_bytes(0x100)})
        with pytest.raises(ArtifactError) as info:
            store.publish(other, "v0003", lineage={}, metrics={})
        assert str(info.value) == "cannot publish v0003: v0003 already exists"
        assert tree(store.path_for("v0003")) == existing
        assert store.verify("v0003") == published
        assert tree(other) == {"model.safetensors": safetensors_bytes(0x100)}

    def test_publish_to_an_existing_empty_directory_is_refused(self, store: ArtifactStore, candidate: Path) -> None:
        store.path_for("v0003").mkdir()
        with pytest.raises(ArtifactError, match="^cannot publish v0003: v0003 already exists$"):
            store.publish(candidate, "v0003", lineage={}, metrics={})
        assert list(store.path_for("v0003").iterdir()) == []
        assert candidate.is_dir()

    def test_publish_refuses_to_republish_a_published_version(
        self, store: ArtifactStore, published: Manifest
    ) -> None:
        with pytest.raises(ArtifactError) as info:
            store.publish(store.path_for("v0003"), "v0004", lineage={}, metrics={})
        assert str(info.value) == f"cannot publish v0004: source {store.path_for('v0003')} is already published"
        assert store.versions() == ["v0003"]


class TestPublishFailure:
    def assert_nothing_published(self, store: ArtifactStore, source: Path) -> None:
        assert not store.path_for("v0003").exists()
        assert store.versions() == []
        assert not (source / MANIFEST_FILE).exists()

    def test_publish_symlink_leaves_no_target(self, store: ArtifactStore, candidate: Path, tmp_path: Path) -> None:
        (tmp_path / "outside.txt").write_text("secret")
        (candidate / "link.txt").symlink_to(tmp_path / "outside.txt")
        with pytest.raises(ArtifactError, match=r"^cannot publish v0003: link\.txt is a symlink$"):
            store.publish(candidate, "v0003", lineage={}, metrics={})
        self.assert_nothing_published(store, candidate)

    def test_publish_symlinked_directory_leaves_no_target(
        self, store: ArtifactStore, candidate: Path, tmp_path: Path
    ) -> None:
        (tmp_path / "elsewhere").mkdir()
        (candidate / "tokenizer").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
        with pytest.raises(ArtifactError, match="^cannot publish v0003: tokenizer is a symlink$"):
            store.publish(candidate, "v0003", lineage={}, metrics={})
        self.assert_nothing_published(store, candidate)

    def test_publish_fifo_leaves_no_target(self, store: ArtifactStore, candidate: Path) -> None:
        os.mkfifo(candidate / "pipe")
        with pytest.raises(ArtifactError, match="^cannot publish v0003: pipe is not a regular file$"):
            store.publish(candidate, "v0003", lineage={}, metrics={})
        self.assert_nothing_published(store, candidate)

    def test_publish_file_that_cannot_be_opened_leaves_no_target(
        self, store: ArtifactStore, candidate: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_open = os.open

        def deny(path: str | Path, flags: int, *args: int, **kwargs: object) -> int:
            if Path(path).name == "config.json":
                raise PermissionError(errno.EACCES, "Permission denied")
            return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", deny)
        with pytest.raises(ArtifactError, match="^cannot publish v0003: cannot read config.json: Permission denied$"):
            store.publish(candidate, "v0003", lineage={}, metrics={})
        monkeypatch.undo()
        self.assert_nothing_published(store, candidate)

    def test_publish_failed_rename_leaves_no_target_and_no_manifest(
        self, store: ArtifactStore, candidate: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def replace(src: str | Path, dst: str | Path) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "replace", replace)
        before = tree(candidate)
        with pytest.raises(ArtifactError, match="^cannot publish v0003: Input/output error$"):
            store.publish(candidate, "v0003", lineage={}, metrics={})
        self.assert_nothing_published(store, candidate)
        assert tree(candidate) == before

    def test_publish_failed_copy_across_filesystems_leaves_nothing(
        self, store: ArtifactStore, candidate: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def replace(src: str | Path, dst: str | Path) -> None:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(ArtifactError, match="^cannot publish v0003: Invalid cross-device link$"):
            store.publish(candidate, "v0003", lineage={}, metrics={})
        self.assert_nothing_published(store, candidate)
        assert sorted(p.name for p in store.incoming_dir().iterdir()) == ["candidate"]

    def test_publish_empty_source_is_refused(self, store: ArtifactStore) -> None:
        empty = store.incoming_dir() / "empty"
        empty.mkdir()
        with pytest.raises(ArtifactError) as info:
            store.publish(empty, "v0003", lineage={}, metrics={})
        assert str(info.value) == f"cannot publish v0003: {empty} holds no files"
        self.assert_nothing_published(store, empty)

    def test_publish_missing_source_is_refused(self, store: ArtifactStore, tmp_path: Path) -> None:
        with pytest.raises(ArtifactError) as info:
            store.publish(tmp_path / "nope", "v0003", lineage={}, metrics={})
        assert str(info.value) == f"cannot publish v0003: source {tmp_path / 'nope'} is not a directory"
        assert not store.root.exists()

    @pytest.mark.parametrize(
        ("lineage", "metrics", "error", "message"),
        [
            ({"when": datetime(2024, 1, 1)}, {}, TypeError, "lineage is not JSON-serializable: "),
            ({}, {"macro_f1": float("nan")}, ValueError, "metrics is not JSON-serializable: "),
            ({}, ["not", "a", "mapping"], TypeError, "metrics must be a mapping, got list"),
        ],
    )
    def test_publish_non_json_lineage_or_metrics_is_refused_before_anything(
        self,
        store: ArtifactStore,
        candidate: Path,
        lineage: object,
        metrics: object,
        error: type[Exception],
        message: str,
    ) -> None:
        with pytest.raises(error) as info:
            store.publish(candidate, "v0003", lineage=lineage, metrics=metrics)  # type: ignore[arg-type]
        assert str(info.value).startswith(message)
        self.assert_nothing_published(store, candidate)


class TestVerify:
    @pytest.mark.parametrize("name", sorted(FAKE_FILES))
    def test_verify_detects_one_tampered_byte(self, store: ArtifactStore, published: Manifest, name: str) -> None:
        path = store.path_for("v0003") / name
        content = bytearray(path.read_bytes())
        content[len(content) // 2] ^= 0x01
        path.write_bytes(bytes(content))
        with pytest.raises(ArtifactError) as info:
            store.verify("v0003")
        assert str(info.value) == f"artifact v0003 failed verification: {name} checksum mismatch"

    @pytest.mark.parametrize("name", sorted(FAKE_FILES))
    def test_verify_detects_a_deleted_file(self, store: ArtifactStore, published: Manifest, name: str) -> None:
        (store.path_for("v0003") / name).unlink()
        with pytest.raises(ArtifactError) as info:
            store.verify("v0003")
        assert str(info.value) == f"artifact v0003 failed verification: missing file {name}"

    @pytest.mark.parametrize("name", ["extra.txt", "extra/more.json", ".hidden"])
    def test_verify_detects_an_extra_file(self, store: ArtifactStore, published: Manifest, name: str) -> None:
        path = store.path_for("v0003") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        with pytest.raises(ArtifactError) as info:
            store.verify("v0003")
        assert str(info.value) == f"artifact v0003 failed verification: unexpected file {name} not in manifest"

    def test_verify_refuses_a_pickle_by_suffix(self, store: ArtifactStore, published: Manifest) -> None:
        (store.path_for("v0003") / "optimizer.pt").write_bytes(b"whatever")
        with pytest.raises(ArtifactError) as info:
            store.verify("v0003")
        assert str(info.value) == "artifact v0003 failed verification: optimizer.pt is a pickle (suffix .pt)"

    def test_verify_refuses_a_pickle_by_magic_bytes(self, store: ArtifactStore, published: Manifest) -> None:
        (store.path_for("v0003") / "model.safetensors").write_bytes(pickle.dumps([1], protocol=4))
        with pytest.raises(ArtifactError) as info:
            store.verify("v0003")
        assert str(info.value) == (
            "artifact v0003 failed verification: model.safetensors is a pickle (pickle protocol 4 header)"
        )

    def test_verify_refuses_a_symlink(self, store: ArtifactStore, published: Manifest, tmp_path: Path) -> None:
        (store.path_for("v0003") / "link").symlink_to(tmp_path)
        with pytest.raises(ArtifactError, match="^artifact v0003 failed verification: link is a symlink$"):
            store.verify("v0003")

    def test_verify_lists_every_problem(self, store: ArtifactStore, published: Manifest) -> None:
        directory = store.path_for("v0003")
        (directory / "vocab.txt").unlink()
        (directory / "config.json").write_text("{}")
        (directory / "zzz.txt").write_text("")
        with pytest.raises(ArtifactError) as info:
            store.verify("v0003")
        assert str(info.value) == (
            "artifact v0003 failed verification: config.json checksum mismatch; missing file vocab.txt; "
            "unexpected file zzz.txt not in manifest"
        )

    def test_verify_detects_a_consistently_rewritten_manifest(
        self, store: ArtifactStore, published: Manifest
    ) -> None:
        directory = store.path_for("v0003")
        (directory / "labels.json").write_text('["evil"]')
        forged = Manifest.build(
            "v0003",
            dict(published.files, **{"labels.json": sha256(b'["evil"]')}),
            lineage=published.lineage,
            metrics=published.metrics,
            created_at=published.created_at,
        )
        (directory / MANIFEST_FILE).write_text(json.dumps(forged.to_dict()))
        assert store.verify("v0003") == forged
        with pytest.raises(ArtifactError) as info:
            store.verify("v0003", expected_checksum=published.checksum)
        assert str(info.value) == (
            f"artifact v0003 failed verification: checksum {forged.checksum} is not the expected {published.checksum}"
        )

    def test_verify_unknown_version_is_not_found(self, store: ArtifactStore) -> None:
        with pytest.raises(ArtifactNotFound) as info:
            store.verify("v0009")
        assert str(info.value) == f"artifact v0009 not found in {store.root}"

    def test_verify_hashes_large_files_in_chunks(self, store: ArtifactStore, candidate: Path) -> None:
        big = os.urandom(3 * (1 << 20) + 123)
        (candidate / "model.safetensors").write_bytes(safetensors_bytes() + big)
        manifest = store.publish(candidate, "v0003", lineage={}, metrics={})
        assert manifest.files["model.safetensors"] == sha256(safetensors_bytes() + big)
        assert store.verify("v0003") == manifest


class TestReadManifest:
    def test_read_manifest_returns_the_published_manifest(self, store: ArtifactStore, published: Manifest) -> None:
        (store.path_for("v0003") / "model.safetensors").write_bytes(b"corrupt but not re-hashed")
        assert store.read_manifest("v0003") == published

    @pytest.mark.parametrize(
        ("content", "detail"),
        [
            (b"{not json", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
            (b"[]", "a manifest must be a JSON object, got list"),
            (
                b'{"version": "v0003"}',
                "missing keys ['checksum', 'created_at', 'files', 'format', 'lineage', 'metrics']",
            ),
        ],
    )
    def test_read_manifest_malformed_json(
        self, store: ArtifactStore, published: Manifest, content: bytes, detail: str
    ) -> None:
        (store.path_for("v0003") / MANIFEST_FILE).write_bytes(content)
        with pytest.raises(ArtifactError) as info:
            store.read_manifest("v0003")
        assert str(info.value) == f"artifact v0003 has a malformed manifest.json: {detail}"

    @pytest.mark.parametrize(
        ("change", "detail"),
        [
            ({"version": "v0002"}, "it names version 'v0002'"),
            ({"checksum": "0" * 64}, "checksum does not match the file list"),
            ({"format": 2}, "unsupported manifest format 2 (expected 1)"),
            ({"files": {"../escape": "0" * 64}}, "file path '../escape' is not a normalised relative path"),
            ({"created_at": "2024-01-01T00:00:00"}, "created_at '2024-01-01T00:00:00' is not UTC"),
            ({"extra": 1}, "unknown keys ['extra']"),
        ],
    )
    def test_read_manifest_inconsistent_fields(
        self, store: ArtifactStore, published: Manifest, change: dict[str, object], detail: str
    ) -> None:
        path = store.path_for("v0003") / MANIFEST_FILE
        data = json.loads(path.read_text())
        data.update(change)
        if "files" in change and "checksum" not in change:
            data["checksum"] = files_checksum(data["files"])
        path.write_text(json.dumps(data))
        with pytest.raises(ArtifactError) as info:
            store.read_manifest("v0003")
        assert str(info.value) == f"artifact v0003 has a malformed manifest.json: {detail}"

    def test_read_manifest_missing_manifest(self, store: ArtifactStore, published: Manifest) -> None:
        (store.path_for("v0003") / MANIFEST_FILE).unlink()
        with pytest.raises(ArtifactError) as info:
            store.read_manifest("v0003")
        assert str(info.value) == "artifact v0003 has no manifest.json"
        assert not isinstance(info.value, ArtifactNotFound)

    def test_read_manifest_unknown_version_is_not_found(self, store: ArtifactStore) -> None:
        with pytest.raises(ArtifactNotFound, match=r"^artifact v0001 not found in "):
            store.read_manifest("v0001")


class TestVersions:
    def test_versions_sorted_by_number_ignoring_everything_else(self, store: ArtifactStore) -> None:
        for name in ["v0010", "v0002", "v10000", "v9999", "notes", "v12", ".trash"]:
            (store.root / name).mkdir(parents=True)
        (store.root / "v0042").write_text("a file, not a version")
        store.incoming_dir()
        assert store.versions() == ["v0002", "v0010", "v9999", "v10000"]


class TestPrune:
    @pytest.fixture
    def five(self, store: ArtifactStore) -> list[str]:
        names = ["v0001", "v0002", "v0003", "v0004", "v0005"]
        for name in names:
            store.publish(write_candidate(store.incoming_dir() / name), name, lineage={}, metrics={})
        return names

    def test_prune_keeps_keep_and_newest_retain(self, store: ArtifactStore, five: list[str]) -> None:
        assert store.prune(keep={"v0001"}, retain=2) == ["v0002", "v0003"]
        assert store.versions() == ["v0001", "v0004", "v0005"]
        for name in store.versions():
            store.verify(name)

    def test_prune_retain_zero_keeps_only_keep(self, store: ArtifactStore, five: list[str]) -> None:
        assert store.prune(keep=["v0002", "v0004", "v0099"], retain=0) == ["v0001", "v0003", "v0005"]
        assert store.versions() == ["v0002", "v0004"]
        assert not list((store.root / ".trash").iterdir())

    def test_prune_nothing_to_delete(self, store: ArtifactStore, five: list[str]) -> None:
        assert store.prune(keep=(), retain=5) == []
        assert store.versions() == five

    def test_prune_never_touches_incoming(self, store: ArtifactStore, five: list[str]) -> None:
        inflight = write_candidate(store.incoming_dir() / "v0006-candidate")
        before = tree(store.incoming_dir())
        assert store.prune(keep=(), retain=0) == five
        assert store.versions() == []
        assert tree(store.incoming_dir()) == before
        assert inflight.is_dir()

    def test_prune_negative_retain_is_a_value_error(self, store: ArtifactStore, five: list[str]) -> None:
        with pytest.raises(ValueError, match="^retain must be >= 0, got -1$"):
            store.prune(keep=(), retain=-1)
        assert store.versions() == five

    def test_prune_refuses_a_typo_in_keep(self, store: ArtifactStore, five: list[str]) -> None:
        with pytest.raises(ValueError, match="^keep holds an invalid version name 'v3'$"):
            store.prune(keep={"v3"}, retain=0)
        with pytest.raises(TypeError, match="^keep must be a collection of version names, not a str$"):
            store.prune(keep="v0003", retain=0)
        assert store.versions() == five


class TestRemoveIncoming:
    def test_remove_incoming_removes_leftovers_only(self, store: ArtifactStore, published: Manifest) -> None:
        leftover = write_candidate(store.incoming_dir() / "crashed")
        stray = store.incoming_dir() / "stray.tmp"
        stray.write_text("x")
        assert store.remove_incoming() == [leftover, stray]
        assert list(store.incoming_dir().iterdir()) == []
        assert store.verify("v0003") == published
        assert store.remove_incoming() == []


class TestManifest:
    def test_manifest_to_dict_from_dict_round_trip(self, published: Manifest) -> None:
        data = published.to_dict()
        assert data["format"] == 1
        assert Manifest.from_dict(json.loads(json.dumps(data))) == published

    def test_manifest_is_read_only(self, published: Manifest) -> None:
        with pytest.raises(TypeError):
            published.files["model.safetensors"] = "0" * 64  # type: ignore[index]
        with pytest.raises(AttributeError):
            published.version = "v0004"  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("files", "message"),
        [
            ({"/etc/passwd": "0" * 64}, "file path '/etc/passwd' is not a normalised relative path"),
            ({"a/../b": "0" * 64}, "file path 'a/../b' is not a normalised relative path"),
            ({"a//b": "0" * 64}, "file path 'a//b' is not a normalised relative path"),
            ({"manifest.json": "0" * 64}, "the manifest cannot list manifest.json itself"),
            ({"a": "XYZ"}, "file 'a' has no valid SHA-256 hex digest: 'XYZ'"),
        ],
    )
    def test_manifest_rejects_bad_files(self, files: dict[str, str], message: str) -> None:
        with pytest.raises(ValueError) as info:
            Manifest.build("v0001", files, lineage={}, metrics={})
        assert str(info.value) == message
