"""A classifier's head after its labels were renamed, merged or retired, with no training.

Why: an operator who renames ``billing`` to ``invoices`` wants the next answer to say
``invoices``, and the next candidate to go on from the same head row, not to grow a
fresh ``invoices`` row beside a stale ``billing`` one. This module rewrites a saved
classifier's head rows and everything keyed by them (the learner state, the replay
buffer's label indices) and saves the result as a new classifier directory:

- rename: the row keeps its weights under the new name;
- merge: one row for the merged label. With ``slda`` statistics (the default learner)
  the sources' feature sums and counts are added and the row refitted, which is exactly
  the LDA head of the merged class; otherwise the row of the target (when it already
  had one) or of the first source is kept, and the next run trains it on the merged
  samples replayed under the new name;
- retire: the row goes, so the label is never predicted again; no row is refitted, so
  every other answer stays exactly what it was. (Its ``slda`` sums go too, while the
  shared Gram matrix keeps its samples: the next refit counts their spread as noise of
  the pooled covariance, a small widening.)

Other labels' rows are copied unchanged, so their answers do not move; the one
exception is a merge under ``slda``, whose refit of the shared covariance moves them a
little (exact LDA of the merged labelling).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from learners.buffer import ReplayBuffer
from learners.discriminant import PER_LABEL_TENSORS, DiscriminantStats, has_statistics
from learners.model import load_classifier, save_classifier
from learners.train import STATE_JSON, STATE_TENSORS

__all__ = ["RelabelResult", "relabel_classifier"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelabelResult:
    labels: list[str]
    buffer_state: dict[str, Any] | None
    buffer_members: list[int]


def _plan(labels: list[str], mapping: Mapping[str, str | None]) -> tuple[list[str], list[int | None], list[int]]:
    """New label order, old row -> new row (None: dropped), and new row -> the old row it starts from."""
    new_labels: list[str] = []
    index_map: list[int | None] = []
    for label in labels:
        name = mapping.get(label, label)
        if name is None:
            index_map.append(None)
            continue
        if name not in new_labels:
            new_labels.append(name)
        index_map.append(new_labels.index(name))
    source_row: list[int] = []
    for j, name in enumerate(new_labels):
        rows = [i for i, target in enumerate(index_map) if target == j]
        # A target that had its own row keeps it; otherwise the first source's row.
        source_row.append(next((i for i in rows if labels[i] == name), rows[0]))
    return new_labels, index_map, source_row


def relabel_classifier(source: Path, output: Path, mapping: Mapping[str, str | None], *,
                       slda_shrinkage: float | None = None) -> RelabelResult:
    """Write ``source``'s classifier into ``output`` with its labels changed by ``mapping``
    (old name -> new name, or None to drop); labels not in ``mapping`` keep their names.

    Raises
    ------
    ModelLoadError
        ``source`` is not a loadable classifier.
    ValueError
        The change would leave no label at all.
    """
    loaded = load_classifier(source)
    model = loaded.model
    old_labels = list(model.labels)
    new_labels, index_map, source_row = _plan(old_labels, mapping)
    if not new_labels:
        raise ValueError("the change would leave the model with no label")
    rows = torch.tensor(source_row, dtype=torch.long)
    head = nn.Linear(model.head.in_features, len(new_labels))
    with torch.no_grad():
        head.weight.copy_(model.head.weight[rows])
        head.bias.copy_(model.head.bias[rows])
    model.head = head
    model.labels = new_labels

    tensors_path = source / STATE_TENSORS
    tensors = load_file(str(tensors_path)) if tensors_path.is_file() else {}
    tensors = _relabel_tensors(tensors, index_map, source_row, len(old_labels), len(new_labels))
    merged = len([j for j in index_map if j is not None]) > len(new_labels)
    if merged and has_statistics(tensors):
        stats = DiscriminantStats.from_tensors(tensors, labels=len(new_labels), hidden=model.feature_size)
        assert stats is not None
        weight, bias, fitted = stats.head(slda_shrinkage)
        with torch.no_grad():
            head.weight[fitted] = weight[fitted].to(head.weight.dtype)
            head.bias[fitted] = bias[fitted].to(head.bias.dtype)

    meta_path = source / STATE_JSON
    meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    buffer_state = meta.get("buffer")
    members: list[int] = []
    if buffer_state:
        buffer = ReplayBuffer.from_state(buffer_state)
        buffer.relabel(dict(enumerate(index_map)))
        buffer_state = buffer.to_state()
        members = [m.sample_id for m in buffer.members]
        meta["buffer"] = buffer_state
    meta["relabeled"] = {old: new for old, new in mapping.items() if old in old_labels}
    meta["parent_labels"] = old_labels

    save_classifier(loaded, output)
    if tensors:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(output / STATE_TENSORS))
    (output / STATE_JSON).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    logger.info("relabeled %s: %d labels -> %d", source.name, len(old_labels), len(new_labels))
    return RelabelResult(labels=new_labels, buffer_state=buffer_state, buffer_members=members)


def _relabel_tensors(tensors: dict[str, torch.Tensor], index_map: list[int | None], source_row: list[int],
                     old_count: int, new_count: int) -> dict[str, torch.Tensor]:
    """Learner state keyed by head row: ``slda`` sums and counts are added per new row; any
    other tensor of the head (EWC importances and anchors, SI's) takes its source row."""
    out: dict[str, torch.Tensor] = {}
    keep = [i for i, j in enumerate(index_map) if j is not None]
    targets = torch.tensor([index_map[i] for i in keep], dtype=torch.long)
    for name, tensor in tensors.items():
        if name in PER_LABEL_TENSORS:
            if tensor.shape[0] < old_count:  # rows of labels that never had statistics
                tensor = torch.cat([tensor, torch.zeros((old_count - tensor.shape[0], *tensor.shape[1:]),
                                                        dtype=tensor.dtype)])
            merged = torch.zeros((new_count, *tensor.shape[1:]), dtype=tensor.dtype)
            merged.index_add_(0, targets, tensor[torch.tensor(keep, dtype=torch.long)])
            out[name] = merged
        elif (name.endswith("head.weight") or name.endswith("head.bias")) and tensor.shape[0] == old_count:
            out[name] = tensor[torch.tensor(source_row, dtype=torch.long)].clone()
        else:
            out[name] = tensor
    return out
