"""Strategy settings, kept apart from the training code so that reading configuration
never imports torch or Avalanche (``lifelong status`` must start in a blink)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ADAPTER_NAMES", "STRATEGY_COMPONENTS", "AdapterConfig", "StrategyConfig", "check_adapter"]

#: Config name -> the Avalanche components it combines.
STRATEGY_COMPONENTS: dict[str, tuple[str, ...]] = {
    "naive": (),
    "replay": ("replay",),
    "ewc": ("ewc",),
    "lwf": ("lwf",),
    "si": ("si",),
    "agem": ("agem",),
    "replay+lwf": ("replay", "lwf"),
    "replay+ewc": ("replay", "ewc"),
    # Frozen encoder, closed-form LDA head from exact running statistics (learners.discriminant).
    "slda": ("slda",),
}

StrategyName = Literal["naive", "replay", "ewc", "lwf", "si", "agem", "replay+lwf", "replay+ewc", "slda"]


class StrategyConfig(BaseModel):
    """How a candidate is trained. Hyper-parameters of components a strategy lacks are ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrategyName = "slda"
    learning_rate: float = Field(default=5e-5, gt=0, le=1.0)
    weight_decay: float = Field(default=0.01, ge=0)
    epochs: int = Field(default=3, ge=1, le=100)
    batch_size: int = Field(default=16, ge=1, le=4096)
    #: Replayed examples per step, on top of ``batch_size`` new ones.
    replay_batch_size: int = Field(default=16, ge=1, le=4096)
    eval_batch_size: int = Field(default=64, ge=1, le=4096)
    max_length: int = Field(default=48, ge=8, le=512)
    ewc_lambda: float = Field(default=100.0, ge=0)
    #: Online EWC: how much of the previous importances survive each new run.
    ewc_decay: float = Field(default=0.9, gt=0, le=1.0)
    lwf_alpha: float = Field(default=1.0, ge=0)
    lwf_temperature: float = Field(default=2.0, gt=0)
    si_lambda: float = Field(default=1.0, ge=0)
    agem_patterns: int = Field(default=256, ge=1)
    agem_sample_size: int = Field(default=64, ge=1)
    #: ``slda``: how far the shared covariance is shrunk towards a scaled identity; ``auto``
    #: chooses it from the data each run (oracle approximating shrinkage).
    slda_shrinkage: float | Literal["auto"] = "auto"
    #: ``slda``: width of the fixed random ReLU feature map the head reads (0: the pooled
    #: features). Chosen when a lineage's first slda version is trained from the base model
    #: and kept by every version after it, since the running statistics live in that space.
    slda_random_features: int = Field(default=2048, ge=0, le=16384)
    seed: int = 0

    @field_validator("name", mode="before")
    @classmethod
    def _known_name(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in STRATEGY_COMPONENTS:
            raise ValueError(
                f"unknown strategy {value!r}; choose one of: {', '.join(STRATEGY_COMPONENTS)}"
            )
        return value

    @field_validator("slda_shrinkage")
    @classmethod
    def _shrinkage_in_range(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and not 0.0 < value < 1.0:
            raise ValueError(f"slda_shrinkage must be 'auto' or a number in (0, 1), got {value}")
        return value

    @property
    def components(self) -> tuple[str, ...]:
        return STRATEGY_COMPONENTS[self.name]

    @property
    def slda_fixed_shrinkage(self) -> float | None:
        """``slda_shrinkage`` as :meth:`learners.discriminant.DiscriminantStats.head` takes it (``None``: auto)."""
        return None if self.slda_shrinkage == "auto" else float(self.slda_shrinkage)


AdapterName = Literal["none", "lora"]
#: ``none``: every encoder weight is trained; ``lora``: low-rank adapters (Hugging Face ``peft``).
ADAPTER_NAMES: tuple[str, ...] = ("none", "lora")


class AdapterConfig(BaseModel):
    """Parameter-efficient fine-tuning: what of the encoder a gradient strategy trains.

    ``lora`` freezes every encoder weight and trains rank-``r`` adapters on the linear
    layers named in ``target_modules`` (plus lifelong's head); a version then stores only
    the adapter and the head, and names the base model it applies to (see
    :mod:`learners.lora`). ``adapter: lora`` is accepted as the short form of
    ``adapter: {name: lora}``.

    >>> AdapterConfig.model_validate("lora").target_modules
    ('query', 'value')
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: AdapterName = "none"
    #: Rank of each adapter; the update of a ``d x k`` weight is ``B @ A`` with ``r (d + k)`` numbers.
    r: int = Field(default=8, ge=1, le=256)
    #: The update is scaled by ``alpha / r``.
    alpha: float = Field(default=16.0, gt=0, le=4096)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    #: Names (last component) of the linear layers adapted; BERT-style encoders call the
    #: attention projections ``query``, ``key``, ``value``.
    target_modules: tuple[str, ...] = Field(default=("query", "value"), min_length=1)
    #: Learning rate of the adapters and the head with ``lora`` (they start from zero and
    #: want a larger step than full fine-tuning); unset uses ``strategy.learning_rate``.
    learning_rate: float | None = Field(default=5e-4, gt=0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):  # LIFELONG_TRAINING__ADAPTER='{"name": "lora", "r": 4}'
                import json

                return json.loads(text)
            return {"name": text}
        return value

    @field_validator("name", mode="before")
    @classmethod
    def _known_name(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ADAPTER_NAMES:
            raise ValueError(f"unknown adapter {value!r}; choose one of: {', '.join(ADAPTER_NAMES)}")
        return value

    @field_validator("target_modules", mode="before")
    @classmethod
    def _module_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # "query,value"
            value = [part.strip() for part in value.split(",")]
        return value

    @field_validator("target_modules")
    @classmethod
    def _module_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name or not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"target module {name!r} is not a module name such as 'query'")
        if len(set(value)) != len(value):
            raise ValueError(f"target_modules lists a module twice: {list(value)}")
        return value

    @property
    def enabled(self) -> bool:
        return self.name != "none"


def check_adapter(strategy: StrategyConfig, adapter: AdapterConfig) -> None:
    """Refuse a strategy/adapter pair that cannot train: ``slda`` trains no encoder weight.

    Raises
    ------
    ValueError
        ``adapter`` is ``lora`` and the strategy is ``slda``.
    """
    if adapter.enabled and "slda" in strategy.components:
        raise ValueError(
            f"training.adapter {adapter.name!r} cannot be used with training.strategy.name 'slda': slda freezes "
            "the encoder and fits its head in closed form, so there is no encoder weight for an adapter to train; "
            "choose a gradient strategy (e.g. 'replay' or 'replay+lwf') or set training.adapter to 'none'"
        )
