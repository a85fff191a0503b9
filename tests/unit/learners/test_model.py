from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from learners.data import encode_texts, pack_batch
from learners.errors import ModelLoadError
from learners.inference import predict
from learners.model import load_base, load_classifier, save_classifier

TEXTS = ["w1 w2 c0k0", "w3 c1k1 w4 w5 w6", "c2k2"]


def _logits(loaded, texts):
    ids = encode_texts(loaded.tokenizer, texts, 32)
    with torch.no_grad():
        return loaded.model.eval()(pack_batch(ids, loaded.tokenizer.pad_token_id))


class TestGrow:
    def test_grow_keeps_old_logits_identical(self, tiny_bert: Path) -> None:
        loaded = load_base(tiny_bert, labels=["c0", "c1"])
        before = _logits(loaded, TEXTS)
        old_weight = loaded.model.head.weight.detach().clone()
        old_bias = loaded.model.head.bias.detach().clone()
        added = loaded.model.grow(["c1", "c2", "c3", "c2"])
        after = _logits(loaded, TEXTS)
        assert added == ["c2", "c3"]
        assert loaded.model.labels == ["c0", "c1", "c2", "c3"]
        assert after.shape == (3, 4)
        # The old rows are copied bit for bit; the logits can differ only in the last bit,
        # because a wider matrix product may sum in another order.
        assert torch.equal(loaded.model.head.weight[:2], old_weight)
        assert torch.equal(loaded.model.head.bias[:2], old_bias)
        torch.testing.assert_close(after[:, :2], before, rtol=0, atol=1e-6)

    def test_grow_with_known_labels_changes_nothing(self, tiny_bert: Path) -> None:
        loaded = load_base(tiny_bert, labels=["c0", "c1"])
        head = loaded.model.head
        assert loaded.model.grow(["c1", "c0"]) == []
        assert loaded.model.head is head

    def test_grow_new_rows_start_near_the_old_rows(self, tiny_bert: Path) -> None:
        loaded = load_base(tiny_bert, labels=["c0", "c1", "c2"])
        loaded.model.grow(["c3"])
        bias = loaded.model.head.bias.detach()
        assert torch.isclose(bias[3], bias[:3].mean())


class TestSaveLoad:
    def test_save_then_load_predicts_identically(self, tiny_bert: Path, tmp_path: Path) -> None:
        loaded = load_base(tiny_bert, labels=["c0", "c1", "c2"])
        save_classifier(loaded, tmp_path / "v1")
        again = load_classifier(tmp_path / "v1")
        assert again.model.labels == ["c0", "c1", "c2"]
        assert torch.equal(_logits(again, TEXTS), _logits(loaded, TEXTS))
        assert json.loads((tmp_path / "v1" / "labels.json").read_text()) == ["c0", "c1", "c2"]
        assert not list((tmp_path / "v1").glob("*.bin")) and not list((tmp_path / "v1").glob("*.pt"))

    def test_load_refuses_labels_that_disagree_with_the_head(self, tiny_bert: Path, tmp_path: Path) -> None:
        loaded = load_base(tiny_bert, labels=["c0", "c1"])
        save_classifier(loaded, tmp_path / "v1")
        (tmp_path / "v1" / "labels.json").write_text('["c0", "c1", "c2"]')
        with pytest.raises(ModelLoadError, match="head has 2 rows but labels.json lists 3 labels"):
            load_classifier(tmp_path / "v1")


class TestLoadBase:
    def test_missing_directory_names_the_path(self, tmp_path: Path) -> None:
        with pytest.raises(ModelLoadError, match=f"model directory {tmp_path / 'nope'} does not exist"):
            load_base(tmp_path / "nope")

    def test_directory_without_config_is_not_a_model(self, tmp_path: Path) -> None:
        (tmp_path / "weights.txt").write_text("x")
        with pytest.raises(ModelLoadError, match="is not a Hugging Face model directory"):
            load_base(tmp_path)

    def test_classifier_load_of_a_plain_encoder_says_what_is_missing(self, tiny_bert: Path) -> None:
        with pytest.raises(ModelLoadError, match="is not a lifelong classifier \\(missing labels.json\\)"):
            load_classifier(tiny_bert)


class TestPredict:
    def test_predict_returns_input_order_and_probabilities(self, tiny_bert: Path) -> None:
        loaded = load_base(tiny_bert, labels=["c0", "c1", "c2"])
        texts = TEXTS * 5
        batched = predict(loaded, texts, batch_size=4)
        single = [predict(loaded, [t], batch_size=1) for t in texts]
        assert len(batched.indices) == len(texts)
        for row, one in zip(batched.probabilities, single, strict=True):
            assert row == pytest.approx(one.probabilities[0], abs=1e-5)
            assert sum(row) == pytest.approx(1.0, abs=1e-5)
