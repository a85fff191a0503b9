"""Reading the benchmarks' datasets and cutting class-incremental stages: every bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.datasets import DatasetError, load_dataset, plan_stages


def _clinc(path: Path, train: list[list[str]], test: list[list[str]]) -> Path:
    path.write_text(json.dumps({"train": train, "test": test}), encoding="utf-8")
    return path


def test_clinc_json_reads_both_splits(tmp_path: Path) -> None:
    data = load_dataset(_clinc(tmp_path / "d.json", [["hi", "greet"], ["bye", "leave"]], [["hello", "greet"]]))
    assert data.train == [("hi", "greet"), ("bye", "leave")] and data.test == [("hello", "greet")]
    assert data.labels == ["greet", "leave"]


def test_csv_and_jsonl_pairs(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\n\"hi, you\",greet\nbye,leave\n", encoding="utf-8")
    (tmp_path / "test.jsonl").write_text('{"text": "hello", "label": "greet"}\n\n', encoding="utf-8")
    data = load_dataset(train=tmp_path / "train.csv", test=tmp_path / "test.jsonl")
    assert data.train == [("hi, you", "greet"), ("bye", "leave")] and data.test == [("hello", "greet")]


@pytest.mark.parametrize(("content", "message"), [
    ("text,intent\nhi,greet\n", r"the CSV header lacks column\(s\) \['label'\] \(need text,label\)"),
    ("text,label\n,greet\n", "line 2: empty text or label"),
])
def test_bad_csv_names_the_file_and_the_problem(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "train.csv").write_text(content, encoding="utf-8")
    (tmp_path / "test.csv").write_text("text,label\nhi,greet\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_dataset(train=tmp_path / "train.csv", test=tmp_path / "test.csv")


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"text": "hi", "label": "greet"}\n{"text": "x"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"train.jsonl line 2: expected an object with string 'text' and 'label'"):
        load_dataset(train=tmp_path / "train.jsonl", test=tmp_path / "train.jsonl")


def test_missing_files_and_half_pairs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset .*nope.json not found \(pass --data PATH"):
        load_dataset(tmp_path / "nope.json")
    with pytest.raises(DatasetError, match="pass both --train and --test, or neither"):
        load_dataset(train=tmp_path / "a.csv")
    with pytest.raises(DatasetError, match=r"dataset file .*a.csv not found"):
        load_dataset(train=tmp_path / "a.csv", test=tmp_path / "b.csv")
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"unknown file type '.txt'"):
        load_dataset(train=tmp_path / "a.txt", test=tmp_path / "a.txt")


def test_test_labels_must_have_been_trained(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"test labels never seen in training: \['other'\]"):
        load_dataset(_clinc(tmp_path / "d.json", [["hi", "greet"]], [["x", "other"]]))


def test_stages_are_disjoint_seeded_and_independent_of_file_order(tmp_path: Path) -> None:
    rows = [[f"t{i}", f"l{i % 6}"] for i in range(30)]
    forward = load_dataset(_clinc(tmp_path / "a.json", rows, rows))
    backward = load_dataset(_clinc(tmp_path / "b.json", rows[::-1], rows))
    stages = plan_stages(forward, tasks=3, classes_per_task=2, seed=4)
    assert [s.number for s in stages] == [1, 2, 3]
    flat = [label for s in stages for label in s.labels]
    assert sorted(flat) == [f"l{i}" for i in range(6)]
    assert plan_stages(backward, tasks=3, classes_per_task=2, seed=4) == stages
    assert plan_stages(forward, tasks=3, classes_per_task=2, seed=5) != stages


def test_too_many_labels_is_refused(tmp_path: Path) -> None:
    data = load_dataset(_clinc(tmp_path / "d.json", [["a", "x"], ["b", "y"]], [["a", "x"]]))
    with pytest.raises(DatasetError, match="^3 x 2 labels asked for, the dataset has 2$"):
        plan_stages(data, tasks=3, classes_per_task=2)


def test_stage_file(tmp_path: Path) -> None:
    data = load_dataset(_clinc(tmp_path / "d.json", [["a", "x"], ["b", "y"], ["c", "z"]], [["a", "x"]]))
    good = tmp_path / "stages.json"
    good.write_text(json.dumps([["y"], ["x", "z"]]), encoding="utf-8")
    assert [s.labels for s in plan_stages(data, tasks=None, classes_per_task=None, stage_file=good)] == [
        ["y"], ["x", "z"]]
    for content, message in [("[[\"q\"]]", r"labels not in the training data: \['q'\]"),
                             ("[[\"x\"], [\"x\"]]", "a label appears in more than one stage"),
                             ("{}", "expected a non-empty list of non-empty lists of labels"),
                             ("[[", "is not JSON")]:
        good.write_text(content, encoding="utf-8")
        with pytest.raises(DatasetError, match=message):
            plan_stages(data, tasks=None, classes_per_task=None, stage_file=good)
