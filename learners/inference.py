"""Batched prediction with the same tokenization and dynamic padding as training."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from learners.data import encode_texts, pack_batch
from learners.model import LoadedClassifier

__all__ = ["Predictions", "predict"]


@dataclass(frozen=True)
class Predictions:
    """Per text: the index of the most likely label, the probability row and the raw logits.

    The probabilities are ``softmax(logits / temperature)``; the logits are kept so that a
    calibration (``learners.calibration``) can be fitted on held-out predictions.
    """

    indices: list[int]
    probabilities: list[list[float]]
    labels: list[str]
    logits: list[list[float]] = field(default_factory=list)
    #: Pooled encoder features per text, when asked for (drift of served texts is measured on them).
    embeddings: list[list[float]] = field(default_factory=list)

    @property
    def predicted_labels(self) -> list[str]:
        return [self.labels[i] for i in self.indices]


def length_batches(loaded: LoadedClassifier, texts: Sequence[str],
                   batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """``(indices, packed batch on the model's device)`` over ``texts`` sorted by token
    length, so each batch pads little; ``indices`` say where each row belongs."""
    device = next(loaded.model.parameters()).device
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    ids = encode_texts(loaded.tokenizer, texts, loaded.max_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        yield chunk, pack_batch([ids[i] for i in chunk], pad_id).to(device)


@torch.inference_mode()
def predict(loaded: LoadedClassifier, texts: Sequence[str], *, batch_size: int = 64,
            temperature: float = 1.0, embeddings: bool = False) -> Predictions:
    """Predict ``texts`` in batches sorted by length (less padding), results in input order."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model = loaded.model
    labels = list(model.labels)
    if not texts:
        return Predictions([], [], labels)
    if not labels:
        raise ValueError("the model has no labels yet")
    was_training = model.training
    model.eval()
    probabilities: list[list[float]] = [[] for _ in texts]
    raw: list[list[float]] = [[] for _ in texts]
    features: list[list[float]] = [[] for _ in texts] if embeddings else []
    for chunk, packed in length_batches(loaded, texts, batch_size):
        if packed.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                pooled = model.embed(packed)
                logits = model.head(model.features(pooled))
        else:
            pooled = model.embed(packed)
            logits = model.head(model.features(pooled))
        if embeddings:
            for i, row in zip(chunk, pooled.float().cpu().tolist(), strict=True):
                features[i] = row
        logits = logits.float()
        rows = torch.softmax(logits / temperature, dim=-1).cpu().tolist()
        for i, row, logit_row in zip(chunk, rows, logits.cpu().tolist(), strict=True):
            probabilities[i] = row
            raw[i] = logit_row
    if was_training:
        model.train()
    indices = [max(range(len(row)), key=row.__getitem__) for row in probabilities]
    return Predictions(indices, probabilities, labels, raw, features)
