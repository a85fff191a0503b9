"""Continual-learning strategies: config names mapped to Avalanche plugins.

Every strategy is Avalanche's ``SupervisedTemplate`` with a set of Avalanche plugins
(``ReplayPlugin``, ``EWCPlugin``, ``LwFPlugin``, ``SynapticIntelligencePlugin``,
``AGEMPlugin``) — the same composition Avalanche's own ``Replay``/``EWC``/``LwF``
classes are made of — built by one factory, :func:`build_strategy`, that passes every
argument explicitly. Two things are lifelong's own, because each retrain runs in a
fresh worker process while Avalanche keeps its state in memory:

- the replay memory is a fixed set of examples chosen by :mod:`learners.buffer` and
  handed in by the caller (:class:`_GivenMemory`), not Avalanche's in-memory buffer;
- what a plugin learned in earlier runs (EWC/SI importances and anchor weights, the
  previous model for LwF, AGEM's reference memory) is exported after training by
  :func:`export_state` and put back before the next run by :func:`build_strategy`.

No Avalanche type leaves this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from avalanche.benchmarks.utils.data_loader import collate_from_data_or_kwargs
from avalanche.training.plugins import (
    AGEMPlugin,
    EvaluationPlugin,
    EWCPlugin,
    LwFPlugin,
    ReplayPlugin,
    SupervisedPlugin,
    SynapticIntelligencePlugin,
)
from avalanche.training.storage_policy import ExemplarsBuffer
from avalanche.training.templates import SupervisedTemplate
from avalanche.training.utils import ParamData
from torch import Tensor, nn
from torch.utils.data import DataLoader

from learners.config import STRATEGY_COMPONENTS, StrategyConfig
from learners.handoff import LearnerState, Progress

__all__ = [
    "STRATEGY_COMPONENTS",
    "Progress",
    "StrategyConfig",
    "build_strategy",
    "export_state",
]

logger = logging.getLogger(__name__)


class _GivenMemory(ExemplarsBuffer):
    """Replay memory fixed by the caller; Avalanche only reads it.

    Membership is chosen by :mod:`learners.buffer` outside the training loop and
    persisted with each version, so this policy never changes it.
    """

    def __init__(self, dataset: Any) -> None:
        super().__init__(max(1, len(dataset)))
        self.buffer = dataset

    def update(self, strategy: Any, **kwargs: Any) -> None:
        return None

    def resize(self, strategy: Any, new_size: int) -> None:
        return None


class _ProgressPlugin(SupervisedPlugin):
    """Reports examples/s and loss, and stops training when asked to."""

    def __init__(self, callback: Callable[[Progress], None] | None, every_s: float,
                 cancelled: Callable[[], bool] | None) -> None:
        super().__init__()
        self.callback = callback
        self.every_s = every_s
        self.cancelled = cancelled
        self.examples = 0
        self.started = 0.0
        self.last_report = 0.0
        self.step = 0
        self.loss_sum = 0.0
        self.loss_n = 0

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.started = self.last_report = time.perf_counter()

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self.step = 0

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        self.step += 1
        self.examples += int(strategy.mb_y.shape[0])
        self.loss_sum += float(strategy.loss.detach())
        self.loss_n += 1
        now = time.perf_counter()
        if self.cancelled is not None and self.cancelled():
            strategy.stop_training()
        if self.callback is not None and now - self.last_report >= self.every_s:
            self._report(strategy, now)

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        if self.callback is not None:
            self._report(strategy, time.perf_counter())

    def _report(self, strategy: Any, now: float) -> None:
        if self.callback is None:
            return
        elapsed = max(now - self.started, 1e-9)
        loss = self.loss_sum / max(self.loss_n, 1)
        self.loss_sum, self.loss_n = 0.0, 0
        self.last_report = now
        self.callback(
            Progress(
                epoch=int(strategy.clock.train_exp_epochs) + 1,
                epochs=int(strategy.train_epochs),
                step=self.step,
                steps_per_epoch=len(strategy.dataloader),
                examples=self.examples,
                examples_per_second=self.examples / elapsed,
                loss=loss,
            )
        )


class _TextStrategy(SupervisedTemplate):
    """``SupervisedTemplate`` whose loaders use the dataset's collate (dynamic padding).

    Avalanche's default train loader ignores ``collate_fn`` for experiences without
    task labels; and on CUDA the forward pass runs under bfloat16 autocast.
    """

    def make_train_dataloader(self, num_workers: int = 0, shuffle: bool = True, pin_memory: Any = None,
                              persistent_workers: bool = False, drop_last: bool = False, **kwargs: Any) -> None:
        args = self._obtain_common_dataloader_parameters(
            batch_size=self.train_mb_size, num_workers=num_workers, shuffle=shuffle, pin_memory=pin_memory,
            persistent_workers=persistent_workers, drop_last=drop_last,
        )
        collate_from_data_or_kwargs(self.adapted_dataset, args)
        self.dataloader = DataLoader(self.adapted_dataset, **args)

    def make_eval_dataloader(self, num_workers: int = 0, shuffle: bool = False, pin_memory: Any = None,
                             persistent_workers: bool = False, **kwargs: Any) -> None:
        args = self._obtain_common_dataloader_parameters(
            batch_size=self.eval_mb_size, num_workers=num_workers, shuffle=shuffle, pin_memory=pin_memory,
            persistent_workers=persistent_workers,
        )
        collate_from_data_or_kwargs(self.adapted_dataset, args)
        self.dataloader = DataLoader(self.adapted_dataset, **args)

    def forward(self) -> Tensor:
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return super().forward()
        return super().forward()


def _param_data(name: str, tensor: Tensor, shape: torch.Size, device: torch.device) -> ParamData:
    """ParamData holding ``tensor`` zero-padded to ``shape`` (the head may have grown since).

    Padded here rather than with ``ParamData.expand``, which indexes with a list of
    slices, an indexing form torch has deprecated.
    """
    if tuple(tensor.shape) != tuple(shape):
        if len(tensor.shape) != len(shape) or any(old > new for old, new in zip(tensor.shape, shape, strict=True)):
            raise ValueError(f"cannot pad {name} from {tuple(tensor.shape)} to {tuple(shape)}")
        padded = torch.zeros(tuple(shape), dtype=tensor.dtype)
        padded[tuple(slice(0, n) for n in tensor.shape)] = tensor
        tensor = padded
    return ParamData(name, init_tensor=tensor.to(device))


def build_strategy(
    *,
    model: nn.Module,
    config: StrategyConfig,
    device: torch.device,
    memory: Any | None,
    state: LearnerState | None,
    parent_model: nn.Module | None,
    parent_label_count: int,
    generation: int,
    progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = 2.0,
    cancelled: Callable[[], bool] | None = None,
) -> Any:
    """A ready-to-train strategy for one experience, continuing from the parent's state.

    Parameters
    ----------
    memory
        Avalanche dataset of the replay-buffer examples (``None`` or empty: no replay yet).
    state
        The parent version's exported learner state, if any.
    parent_model
        A copy of the parent version's model, which becomes LwF's frozen teacher (the
        strategy takes ownership); ``None`` for the first version.
    parent_label_count
        How many of ``model``'s head rows the parent already had (LwF distils only those).
    generation
        How many experiences the parent lineage has trained on; EWC/SI penalties apply from 1.
    """
    components = config.components
    plugins: list[SupervisedPlugin] = [_ProgressPlugin(progress, progress_every_s, cancelled)]
    has_memory = memory is not None and len(memory) > 0
    if "replay" in components and has_memory:
        plugins.append(
            ReplayPlugin(
                mem_size=max(1, len(memory)),
                batch_size=config.batch_size,
                batch_size_mem=config.replay_batch_size,
                storage_policy=_GivenMemory(memory),
            )
        )
    state = state or LearnerState()
    named = dict(model.named_parameters())
    if "ewc" in components:
        ewc = EWCPlugin(ewc_lambda=config.ewc_lambda, mode="online", decay_factor=config.ewc_decay,
                        keep_importance_data=False)
        if generation > 0 and any(key.startswith("ewc.importance.") for key in state.tensors):
            for name, param in named.items():
                saved, imp = state.tensors.get(f"ewc.params.{name}"), state.tensors.get(f"ewc.importance.{name}")
                if saved is not None and imp is not None:
                    ewc.saved_params[generation - 1][name] = _param_data(name, saved, param.shape, device)
                    ewc.importances[generation - 1][name] = _param_data(name, imp, param.shape, device)
                else:
                    # Exported state covers trainable parameters only (a LoRA encoder's frozen
                    # weights have none, a LoRA parent's adapters are unknown to full fine-tuning):
                    # zero importance, no anchor, so they add no penalty. Online EWC pairs the old
                    # importances with the new ones in parameter order, so every name needs one.
                    ewc.importances[generation - 1][name] = ParamData(
                        name, init_tensor=torch.zeros(param.shape, dtype=param.dtype, device=device))
        plugins.append(ewc)
    if "si" in components:
        si = SynapticIntelligencePlugin(si_lambda=config.si_lambda)
        for index in (0, 1):
            for name, param in named.items():
                tensor = state.tensors.get(f"si.ewc{index}.{name}")
                if tensor is not None:
                    si.ewc_data[index][name] = _param_data(name, tensor, param.flatten().shape, device)
        for key in si.syn_data:
            for name, param in named.items():
                tensor = state.tensors.get(f"si.{key}.{name}")
                if tensor is not None:
                    si.syn_data[key][name] = _param_data(name, tensor, param.flatten().shape, device)
        plugins.append(si)
    if "lwf" in components:
        lwf = LwFPlugin(alpha=config.lwf_alpha, temperature=config.lwf_temperature)
        if parent_model is not None and parent_label_count > 0:
            lwf.lwf.prev_model = _Teacher(parent_model.to(device).eval())
            lwf.lwf.prev_classes_by_task[0] = set(range(parent_label_count))
            lwf.lwf.expcount = generation
        plugins.append(lwf)
    if "agem" in components:
        agem = AGEMPlugin(patterns_per_experience=config.agem_patterns, sample_size=config.agem_sample_size)
        if has_memory:
            agem.update_memory(memory)
        plugins.append(agem)

    # Frozen parameters (a LoRA encoder's weights) get no gradient, so AdamW leaves them alone.
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    strategy = _TextStrategy(
        model=model,
        optimizer=optimizer,
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=config.batch_size,
        train_epochs=config.epochs,
        eval_mb_size=config.eval_batch_size,
        device=device,
        plugins=plugins,
        evaluator=EvaluationPlugin(loggers=[]),
        eval_every=-1,
    )
    # The clock counts experiences this lineage has already trained on, so EWC and SI
    # apply their penalties from the parent's state.
    strategy.clock.train_exp_counter = generation
    return strategy


class _Teacher(nn.Module):
    """The parent model as LwF's teacher: frozen, gradients never flow into it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        for param in self.model.parameters():
            param.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(x)


def export_state(strategy: Any) -> LearnerState:
    """The learner state the next version needs, taken from a strategy after ``train``.

    Only trainable parameters are exported: a frozen one (a LoRA encoder's weights) never
    moves, so its anchor and its (zero) importance would only make the artifact large.
    """
    state = LearnerState(meta={"generation": int(strategy.clock.train_exp_counter)})
    trainable = {name for name, param in strategy.model.named_parameters() if param.requires_grad}
    for plugin in strategy.plugins:
        if isinstance(plugin, EWCPlugin):
            last = max(plugin.importances) if plugin.importances else None
            if last is not None:
                for name, data in plugin.importances[last].items():
                    if name in trainable:
                        state.tensors[f"ewc.importance.{name}"] = data.data.detach().cpu().clone()
                for name, data in plugin.saved_params[last].items():
                    if name in trainable:
                        state.tensors[f"ewc.params.{name}"] = data.data.detach().cpu().clone()
        elif isinstance(plugin, SynapticIntelligencePlugin):
            for index in (0, 1):
                for name, data in plugin.ewc_data[index].items():
                    if name in trainable:
                        state.tensors[f"si.ewc{index}.{name}"] = data.data.detach().cpu().clone()
            for key, values in plugin.syn_data.items():
                for name, data in values.items():
                    if name in trainable:
                        state.tensors[f"si.{key}.{name}"] = data.data.detach().cpu().clone()
    return state
