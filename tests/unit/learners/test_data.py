from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learners.data import Example, PadCollate, make_dataset, pack_batch
from learners.model import load_base


class TestPackBatch:
    def test_pack_batch_pads_only_to_the_longest_item(self) -> None:
        packed = pack_batch([[5, 6], [7, 8, 9, 10], [11]], pad_id=0)
        assert packed.shape == (3, 2, 4)
        assert packed[:, 0].tolist() == [[5, 6, 0, 0], [7, 8, 9, 10], [11, 0, 0, 0]]
        assert packed[:, 1].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]

    def test_pack_batch_rejects_empty(self) -> None:
        with pytest.raises(ValueError, match="cannot pack an empty batch"):
            pack_batch([], pad_id=0)


class TestMakeDataset:
    def test_batches_from_the_dataset_collate_are_dynamically_padded(self, tiny_bert: Path) -> None:
        loaded = load_base(tiny_bert)
        examples = [Example(1, "w1", "c0"), Example(2, "w1 w2 w3 w4 w5", "c1"), Example(3, "w2 w3", "c0")]
        dataset = make_dataset(examples, tokenizer=loaded.tokenizer, label_index={"c0": 0, "c1": 1}, max_length=32)
        packed, labels, tasks = dataset.collate_fn([dataset[0], dataset[2]])
        # [CLS] w1 [SEP] and [CLS] w2 w3 [SEP]: padded to 4, not to max_length.
        assert packed.shape == (2, 2, 4)
        assert labels.tolist() == [0, 0] and tasks.tolist() == [0, 0]
        assert list(dataset.targets) == [0, 1, 0]

    def test_make_dataset_truncates_to_max_length(self, tiny_bert: Path) -> None:
        loaded = load_base(tiny_bert)
        dataset = make_dataset([Example(1, " ".join(["w1"] * 50), "c0")], tokenizer=loaded.tokenizer,
                               label_index={"c0": 0}, max_length=8)
        assert len(dataset[0][0]) == 8

    def test_make_dataset_rejects_unknown_labels(self, tiny_bert: Path) -> None:
        loaded = load_base(tiny_bert)
        with pytest.raises(ValueError, match=r"labels not in the model's label map: \['zz'\]"):
            make_dataset([Example(1, "w1", "zz")], tokenizer=loaded.tokenizer, label_index={}, max_length=8)

    def test_pad_collate_is_picklable(self) -> None:
        import pickle

        collate = pickle.loads(pickle.dumps(PadCollate(3)))
        packed, _, _ = collate([([1, 2], 0, 0), ([4], 1, 0)])
        assert torch.equal(packed[:, 0], torch.tensor([[1, 2], [4, 3]]))
