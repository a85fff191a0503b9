"""Strategy settings, kept apart from the training code so that reading configuration
never imports torch or Avalanche (``lifelong status`` must start in a blink)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["STRATEGY_COMPONENTS", "StrategyConfig"]

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
    #: ``slda``: how far the shared covariance is shrunk towards a scaled identity.
    slda_shrinkage: float = Field(default=1e-3, gt=0, lt=1.0)
    seed: int = 0

    @field_validator("name", mode="before")
    @classmethod
    def _known_name(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in STRATEGY_COMPONENTS:
            raise ValueError(
                f"unknown strategy {value!r}; choose one of: {', '.join(STRATEGY_COMPONENTS)}"
            )
        return value

    @property
    def components(self) -> tuple[str, ...]:
        return STRATEGY_COMPONENTS[self.name]
