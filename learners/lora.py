"""Low-rank adapters (LoRA, Hugging Face ``peft``) on the classifier's encoder.

With ``adapter: lora`` a run freezes every encoder weight and trains rank-``r`` matrices
``A`` and ``B`` next to each targeted linear layer (``W x + (alpha / r) B A x``), plus
lifelong's head. The design, chosen so that a version stores only what changed and
loads the same way everywhere:

- **One adapter per lineage, continued.** A child starts from its parent's ``A`` and
  ``B`` (and head) and trains them further, the way full fine-tuning continues the
  parent's weights. The adapter therefore always holds the whole change from the base
  model, so a version is self-contained: base model + its own adapter + its head,
  with no chain of parents to replay, and pruning a parent never breaks a child. The
  cost: every generation shares one rank-``r`` update (``r`` bounds the capacity).
  Because parameter names do not change between generations, EWC anchors and
  importances, LwF's teacher and replay work exactly as with full fine-tuning,
  restricted to the trainable parameters.
- **The artifact.** ``adapter.safetensors`` (the ``lora_A``/``lora_B`` tensors and the
  head), ``adapter.json`` (the LoRA settings and the base model's path and
  fingerprint, :func:`base_fingerprint`), ``config.json``, ``labels.json`` and
  ``classifier.json``; no encoder weights and no tokenizer, which come from the base
  model directory. Loading refuses a base model whose fingerprint differs.
- **Merged at the end.** After training (on the CPU) the adapter is merged into the
  encoder weights (``peft``'s ``merge_and_unload``); loading rebuilds exactly that
  computation — the same base, the same tensors, the same merge — so a loaded version
  gives bit-identical logits to the model the run finished with, and serving pays no
  adapter overhead.

A LoRA run whose parent was fully fine-tuned (its encoder is not the base model's)
trains a fresh adapter on the parent's encoder and saves the merged result as a full
artifact, because there is no base to refer to; a parent whose encoder is still the
base model's (an slda lineage) starts a fresh adapter on the base.

``peft`` is imported on first use: serving a fully fine-tuned model never imports it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from learners.config import AdapterConfig
from learners.errors import ModelLoadError

if TYPE_CHECKING:
    from learners.model import TextClassifier

__all__ = [
    "ADAPTER_JSON",
    "ADAPTER_WEIGHTS",
    "LoraAdapter",
    "adapter_config",
    "adapter_tensors",
    "attach_lora",
    "base_fingerprint",
    "has_adapter",
    "merge_lora",
    "merged_copy",
    "read_adapter_json",
    "resolve_base",
    "same_encoder",
    "trainable_parameter_count",
]

logger = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_JSON = "adapter.json"
ADAPTER_FORMAT = 1
#: Files of a base model directory that decide what a loaded encoder computes.
_FINGERPRINT_PATTERNS = ("config.json", "*.safetensors", "*.bin", "tokenizer.json", "tokenizer_config.json",
                         "vocab.txt", "vocab.json", "merges.txt", "special_tokens_map.json", "*.model")
_fingerprints: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


@dataclass
class LoraAdapter:
    """A trained adapter and the base model it applies to."""

    config: AdapterConfig
    base_model: Path
    base_sha256: str
    #: ``lora_A``/``lora_B`` weights, keyed as in the wrapped classifier's ``state_dict``.
    tensors: dict[str, Tensor]

    def describe(self) -> dict[str, Any]:
        """The JSON written to ``adapter.json`` (and into the version's lineage)."""
        return {
            "format": ADAPTER_FORMAT,
            "name": self.config.name,
            "r": self.config.r,
            "alpha": self.config.alpha,
            "dropout": self.config.dropout,
            "target_modules": list(self.config.target_modules),
            "base_model": {"path": str(self.base_model), "sha256": self.base_sha256},
            "parameters": int(sum(t.numel() for t in self.tensors.values())),
        }


def base_fingerprint(path: Path) -> str:
    """SHA-256 over the weights, config and tokenizer files of a base model directory.

    Cached per process by file names, sizes and modification times (a base model is
    about 90 MB; loading a version must not re-hash it every time).
    """
    path = Path(path).resolve()
    files = sorted({f for pattern in _FINGERPRINT_PATTERNS for f in path.glob(pattern) if f.is_file()})
    stats = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    key = (str(path), stats)
    cached = _fingerprints.get(key)
    if cached is not None:
        return cached
    outer = hashlib.sha256()
    for file in files:
        inner = hashlib.sha256()
        with file.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(f"{file.name}\0{inner.hexdigest()}\n".encode())
    digest = outer.hexdigest()
    _fingerprints[key] = digest
    return digest


def _peft() -> Any:
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelLoadError("training.adapter 'lora' needs the peft package (pip install 'peft>=0.17')") from exc
    return peft


def has_adapter(model: TextClassifier) -> bool:
    """Whether ``model``'s encoder is wrapped with a live (unmerged) adapter."""
    return hasattr(model.backbone, "merge_and_unload")


def attach_lora(model: TextClassifier, config: AdapterConfig, tensors: dict[str, Tensor] | None = None) -> None:
    """Wrap ``model.backbone`` with LoRA adapters; only they (and the head) stay trainable.

    ``tensors`` (from :func:`adapter_tensors`) sets the adapters' weights; without it
    ``B`` starts at zero, so the wrapped model computes what it did before. The wrapping
    itself does not move the global random state.

    Raises
    ------
    ModelLoadError
        ``config.target_modules`` matches no layer of the encoder, or ``tensors`` do not
        fit the adapters.
    """
    peft = _peft()
    lora = peft.LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                           target_modules=list(config.target_modules), bias="none")
    with torch.random.fork_rng(devices=[]):
        try:
            model.backbone = peft.get_peft_model(model.backbone, lora)
        except ValueError as exc:
            raise ModelLoadError(
                f"training.adapter.target_modules {list(config.target_modules)} do not fit the encoder: {exc}"
            ) from exc
    for param in model.head.parameters():
        param.requires_grad_(True)
    if tensors is not None:
        expected = set(adapter_tensors(model))
        if set(tensors) != expected:
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise ModelLoadError(f"adapter tensors do not fit the adapter (missing {missing[:3]}, "
                                 f"unexpected {extra[:3]}): r, target_modules or the encoder differ")
        result = model.load_state_dict(tensors, strict=False)
        if result.unexpected_keys:
            raise ModelLoadError(f"unexpected adapter tensors: {result.unexpected_keys[:3]}")


def adapter_tensors(model: TextClassifier) -> dict[str, Tensor]:
    """The adapter weights of a wrapped model, detached CPU copies keyed as in its ``state_dict``."""
    return {name: tensor.detach().to("cpu").clone().contiguous()
            for name, tensor in model.state_dict().items() if ".lora_" in name}


def merge_lora(model: TextClassifier) -> None:
    """Fold the adapter into the encoder weights and drop the wrapper (in place)."""
    if has_adapter(model):
        model.backbone = model.backbone.merge_and_unload()
    for param in model.parameters():
        param.requires_grad_(True)


def merged_copy(model: TextClassifier) -> TextClassifier:
    """A copy of ``model`` with any adapter merged (LwF's teacher: no adapter overhead)."""
    twin = copy.deepcopy(model)
    merge_lora(twin)
    return twin


def trainable_parameter_count(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def same_encoder(a: nn.Module, b: nn.Module) -> bool:
    """Whether two encoders hold bit-identical parameters and buffers."""
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(
        left[k].shape == right[k].shape and torch.equal(left[k], right[k]) for k in left)


def read_adapter_json(directory: Path) -> dict[str, Any]:
    """``adapter.json`` of a LoRA version, checked.

    Raises
    ------
    ModelLoadError
        The file cannot be read or lacks what loading needs.
    """
    path = directory / ADAPTER_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        base = data["base_model"]
        if data.get("format") != ADAPTER_FORMAT or data.get("name") != "lora":
            raise ValueError(f"unsupported adapter format {data.get('format')!r} / name {data.get('name')!r}")
        if not isinstance(base.get("path"), str) or not isinstance(base.get("sha256"), str):
            raise ValueError("base_model needs a path and a sha256")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    return data


def adapter_config(data: dict[str, Any]) -> AdapterConfig:
    """The :class:`AdapterConfig` an ``adapter.json`` was trained with."""
    try:
        return AdapterConfig(name="lora", r=data["r"], alpha=data["alpha"], dropout=data["dropout"],
                             target_modules=tuple(data["target_modules"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{ADAPTER_JSON}: invalid LoRA settings: {exc}") from exc


def resolve_base(recorded: str, sha256: str, candidates: list[Path]) -> Path:
    """The base model directory an adapter applies to: the first of ``recorded`` and
    ``candidates`` that exists and has the recorded fingerprint.

    Raises
    ------
    ModelLoadError
        No candidate has that fingerprint.
    """
    tried = []
    for path in [Path(recorded), *candidates]:
        if path in tried or not (path / "config.json").is_file():
            continue
        tried.append(path)
        if base_fingerprint(path) == sha256:
            return path
    raise ModelLoadError(
        f"the base model this adapter was trained on (sha256 {sha256[:12]}, at {recorded}) is not available"
        + (f"; {', '.join(map(str, tried))} differ" if tried else "")
    )
