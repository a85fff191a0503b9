"""Labelled datasets for the learning benchmarks, and their split into class-incremental stages.

Why one module: ``lifelong bench learner`` and ``lifelong bench continual`` must read
the same files the same way and cut the same stages from the same seed, or their
figures cannot be compared. Every problem with the input is a :class:`DatasetError`
with one line that names the file, raised before anything is trained or sent.

Formats: CLINC150's ``data_full.json`` (``{"train": [[text, label], ...], "test": ...}``),
or a train and a test file, each CSV with a ``text,label`` header or JSONL of
``{"text": ..., "label": ...}`` objects.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CLINC150", "Dataset", "DatasetError", "Stage", "all_texts", "load_dataset", "plan_stages"]

#: Where CLINC150 lies in this workspace (``../shared/datasets`` beside the repository).
CLINC150 = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "clinc150" / "data_full.json"

Pair = tuple[str, str]


class DatasetError(Exception):
    """The dataset or the stage plan cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class Dataset:
    train: list[Pair]
    test: list[Pair]
    #: Texts no label covers (CLINC150's ``oos_train`` / ``oos_test``); empty for other data.
    oos_train: list[str] = field(default_factory=list)
    oos_test: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Training labels in order of first appearance."""
        return list(dict.fromkeys(label for _, label in self.train))


@dataclass(frozen=True)
class Stage:
    number: int
    labels: list[str]


def load_dataset(data: Path | None = None, *, train: Path | None = None, test: Path | None = None) -> Dataset:
    """Read ``data`` (CLINC150 JSON) or the ``train``/``test`` pair; CLINC150 when nothing is given."""
    if (train is None) != (test is None):
        raise DatasetError("pass both --train and --test, or neither")
    if train is not None and test is not None:
        if data is not None:
            raise DatasetError("pass either --data or --train/--test, not both")
        dataset = Dataset(_read_pairs(train), _read_pairs(test))
    else:
        dataset = _read_clinc(data or CLINC150)
    if not dataset.train:
        raise DatasetError("the training split is empty")
    missing = sorted({label for _, label in dataset.test} - set(dataset.labels))
    if missing:
        raise DatasetError(f"test labels never seen in training: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return dataset


def plan_stages(dataset: Dataset, *, tasks: int | None, classes_per_task: int | None, seed: int = 0,
                stage_file: Path | None = None) -> list[Stage]:
    """Stages of new labels: ``tasks`` groups of ``classes_per_task`` labels shuffled by ``seed``, or a file.

    The stage file is JSON, a list of stages each a list of labels. Labels are sorted
    before the shuffle so that the seed, not the file's order, decides the stages.
    """
    known = set(dataset.labels)
    if stage_file is not None:
        try:
            planned = json.loads(stage_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DatasetError(f"cannot read stage file {stage_file}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise DatasetError(f"stage file {stage_file} is not JSON: {exc}") from exc
        if (not isinstance(planned, list) or not planned
                or not all(isinstance(s, list) and s and all(isinstance(x, str) for x in s) for s in planned)):
            raise DatasetError(f"stage file {stage_file}: expected a non-empty list of non-empty lists of labels")
        flat = [label for stage in planned for label in stage]
        unknown = sorted(set(flat) - known)
        if unknown:
            raise DatasetError(f"stage file {stage_file}: labels not in the training data: {unknown[:5]}")
        if len(flat) != len(set(flat)):
            raise DatasetError(f"stage file {stage_file}: a label appears in more than one stage")
        return [Stage(i + 1, list(stage)) for i, stage in enumerate(planned)]
    if tasks is None or classes_per_task is None or tasks < 1 or classes_per_task < 1:
        raise DatasetError("--tasks and --classes-per-task must be positive")
    if tasks * classes_per_task > len(known):
        raise DatasetError(f"{tasks} x {classes_per_task} labels asked for, the dataset has {len(known)}")
    labels = sorted(known)
    random.Random(seed).shuffle(labels)
    return [Stage(i + 1, labels[i * classes_per_task:(i + 1) * classes_per_task]) for i in range(tasks)]


def all_texts(path: Path) -> list[str]:
    """Every text of ``path``, labelled or not: all splits of CLINC150's JSON (``val`` and the
    out-of-scope ones too, 23,700 texts), or a CSV/JSONL file of ``text,label`` rows. For the
    benchmarks that need utterances rather than a split (ingest, redaction)."""
    if path.suffix.lower() != ".json":
        return [text for text, _ in _read_pairs(path)]
    if not path.is_file():
        raise DatasetError(f"dataset {path} not found (pass CLINC150's data_full.json or a CSV/JSONL file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DatasetError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object of splits, each a list of [text, label] pairs")
    return [text for split, rows in data.items() if isinstance(rows, list) for text, _ in _pairs(path, rows, split)]


def _read_clinc(path: Path) -> Dataset:
    if not path.is_file():
        raise DatasetError(f"dataset {path} not found (pass --data PATH to CLINC150's data_full.json, "
                           "or --train/--test CSV or JSONL files)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DatasetError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("train", "test")):
        raise DatasetError(f"{path}: expected an object with 'train' and 'test' lists of [text, label] pairs")
    oos = {split: [text for text, _ in _pairs(path, data[split], split)] if isinstance(data.get(split), list) else []
           for split in ("oos_train", "oos_test")}
    return Dataset(_pairs(path, data["train"], "train"), _pairs(path, data["test"], "test"),
                   oos["oos_train"], oos["oos_test"])


def _pairs(path: Path, rows: list[object], split: str) -> list[Pair]:
    pairs = []
    for index, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(x, str) for x in row)):
            raise DatasetError(f"{path}: {split}[{index}] is not a [text, label] pair of strings")
        pairs.append((row[0], row[1]))
    return pairs


def _read_pairs(path: Path) -> list[Pair]:
    if not path.is_file():
        raise DatasetError(f"dataset file {path} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _read_csv(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return _read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc.reason}") from exc
    raise DatasetError(f"{path}: unknown file type {suffix!r}; use .csv or .jsonl")


def _read_csv(path: Path) -> list[Pair]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"text", "label"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: the CSV header lacks column(s) {sorted(missing)} (need text,label)")
        pairs = []
        for row in reader:
            text, label = row.get("text"), row.get("label")
            if not text or not label:
                raise DatasetError(f"{path} line {reader.line_num}: empty text or label")
            pairs.append((text, label))
        return pairs


def _read_jsonl(path: Path) -> list[Pair]:
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path} line {number} is not JSON: {exc}") from exc
            if not (isinstance(row, dict) and isinstance(row.get("text"), str) and isinstance(row.get("label"), str)
                    and row["text"] and row["label"]):
                raise DatasetError(f"{path} line {number}: expected an object with string 'text' and 'label'")
            pairs.append((row["text"], row["label"]))
    return pairs
