"""Text examples, tokenization and the collation Avalanche strategies train on.

Texts are tokenized once, when a dataset is built, and padded per batch to the
longest item in it (dynamic padding): short utterances then cost short tensors.
A batch is ``(packed, labels, task_labels)`` where ``packed`` is
``LongTensor[B, 2, L]`` (input ids and attention mask stacked) so that Avalanche's
single ``.to(device)`` per minibatch element moves both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

if TYPE_CHECKING:  # Avalanche is imported only where a dataset is built (see learners.handoff)
    from avalanche.benchmarks.utils.classification_dataset import TaskAwareClassificationDataset

__all__ = ["Example", "PadCollate", "encode_texts", "make_dataset", "pack_batch"]


@dataclass(frozen=True)
class Example:
    """One training or evaluation example as the daemon hands it over."""

    sample_id: int
    text: str
    label: str


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to ``max_length`` (special tokens included), unpadded."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return [list(ids) for ids in encoded["input_ids"]]


def pack_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> Tensor:
    """``LongTensor[B, 2, L]`` of ids and attention mask, L = longest sequence in the batch."""
    if not sequences:
        raise ValueError("cannot pack an empty batch")
    length = max(len(seq) for seq in sequences)
    packed = torch.full((len(sequences), 2, length), pad_id, dtype=torch.long)
    packed[:, 1] = 0
    for row, seq in enumerate(sequences):
        packed[row, 0, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        packed[row, 1, : len(seq)] = 1
    return packed


class PadCollate:
    """Collate ``(ids, label, task)`` items into ``(packed, labels, tasks)`` with dynamic padding.

    A class rather than a closure so that datasets using it can be pickled into a
    worker process.
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: Sequence[tuple[Any, ...]]) -> list[Tensor]:
        ids = [item[0] for item in batch]
        labels = torch.as_tensor([int(item[1]) for item in batch], dtype=torch.long)
        tasks = torch.as_tensor([int(item[-1]) for item in batch], dtype=torch.long)
        return [pack_batch(ids, self.pad_id), labels, tasks]


class _EncodedTexts(Dataset):
    def __init__(self, ids: list[list[int]], targets: list[int]) -> None:
        self.ids = ids
        self.targets = targets

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[list[int], int]:
        return self.ids[index], self.targets[index]


def make_dataset(
    examples: Sequence[Example],
    *,
    tokenizer: PreTrainedTokenizerBase,
    label_index: dict[str, int],
    max_length: int,
) -> TaskAwareClassificationDataset:
    """An Avalanche classification dataset of ``examples`` (task label 0 for all).

    Raises
    ------
    ValueError
        An example's label is not in ``label_index`` (grow the model first).
    """
    from avalanche.benchmarks.utils import DataAttribute
    from avalanche.benchmarks.utils.classification_dataset import TaskAwareClassificationDataset

    unknown = sorted({ex.label for ex in examples} - set(label_index))
    if unknown:
        raise ValueError(f"labels not in the model's label map: {unknown[:10]}")
    ids = encode_texts(tokenizer, [ex.text for ex in examples], max_length) if examples else []
    targets = [label_index[ex.label] for ex in examples]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TaskAwareClassificationDataset(
        [_EncodedTexts(ids, targets)],
        data_attributes=[
            DataAttribute(targets, "targets"),
            DataAttribute([0] * len(targets), "targets_task_labels", use_in_getitem=True),
        ],
        collate_fn=PadCollate(pad_id),
    )
