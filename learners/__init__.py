"""The continual-learning engine (incremental fine-tuning with Avalanche); built in issue #3."""

__all__: list[str] = []
