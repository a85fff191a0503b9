"""The production model behind ``/v1/predict``, swapped without a restart.

A swap replaces one reference; a request takes that reference once at its start,
so requests in flight during a promotion finish on the model they started with and
none fails. The new model is fully loaded and verified before the swap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from daemon.errors import DaemonError
from learners.calibration import Calibration
from learners.inference import predict
from learners.model import LoadedClassifier, load_classifier
from storage.artifacts import ArtifactStore

__all__ = ["LoadedVersion", "NoProductionModel", "Prediction", "Predictor"]

logger = logging.getLogger(__name__)


class NoProductionModel(DaemonError):
    """Nothing has been promoted yet."""


@dataclass(frozen=True)
class Prediction:
    version: str
    #: Per text the most likely label, ``None`` where the model abstained.
    labels: list[str | None]
    #: Per text the ``top_k`` labels and their (calibrated) probabilities.
    probabilities: list[dict[str, float]]
    abstained: list[bool] = field(default_factory=list)
    #: Per text, below the version's abstain threshold, whether or not ``serving.abstain``
    #: let it abstain (what the drift trigger watches).
    unsure: list[bool] = field(default_factory=list)
    #: Per text its pooled encoder features, when the predictor keeps them (``embeddings``).
    embeddings: list[list[float]] = field(default_factory=list)

    @property
    def top_labels(self) -> list[str]:
        """Per text the most likely label, abstained or not (the classifier's answer)."""
        return [next(iter(probs)) for probs in self.probabilities]


@dataclass(frozen=True)
class LoadedVersion:
    """A verified, loaded version, ready to serve."""

    version: str
    loaded: LoadedClassifier
    #: Temperature and abstain threshold fitted when the version was evaluated (its
    #: manifest's ``metrics.calibration``); ``None`` for versions evaluated without one.
    calibration: Calibration | None = None


class Predictor:
    """Holds the serving model; thread-safe."""

    def __init__(self, store: ArtifactStore, *, batch_size: int = 64, top_k: int = 5, abstain: bool = True) -> None:
        self.store = store
        self.batch_size = batch_size
        self.top_k = top_k
        #: Apply the serving version's abstain threshold (its temperature applies either way).
        self.abstain = abstain
        #: Return each text's encoder features too (the embedding drift detector reads them).
        self.embeddings = False
        self._serving: LoadedVersion | None = None

    @property
    def version(self) -> str | None:
        serving = self._serving
        return serving.version if serving else None

    @property
    def serving(self) -> LoadedVersion | None:
        return self._serving

    def prepare(self, version: str, *, checksum: str | None) -> LoadedVersion:
        """Verify and load ``version`` without serving it yet (the slow, fallible part).

        ``checksum`` is the one the registry recorded at publication. The manifest alone
        cannot be trusted: whoever can rewrite the weights can rewrite the manifest to
        match, but not the database row. ``None`` only where no registry exists (a
        standalone store, as in the latency benchmark).

        Raises
        ------
        storage.artifacts.ArtifactError
            The artifact is missing or fails verification.
        learners.errors.ModelLoadError
            The files verify but do not load.
        """
        manifest = self.store.verify(version, expected_checksum=checksum)
        recorded = (manifest.metrics or {}).get("calibration")
        return LoadedVersion(version, load_classifier(self.store.path_for(version)),
                             Calibration.from_dict(recorded) if recorded else None)

    def activate(self, prepared: LoadedVersion) -> None:
        """Serve ``prepared`` from the next request on (one reference swap)."""
        self._serving = prepared
        logger.info("serving model %s", prepared.version)

    def clear(self) -> None:
        self._serving = None

    def predict(self, texts: Sequence[str]) -> Prediction:
        """Labels (``None`` where the model abstains) and the top probabilities per text,
        from the model serving at call time."""
        serving = self._serving
        if serving is None:
            raise NoProductionModel("no production model yet: nothing has been promoted")
        calibration = serving.calibration
        temperature = calibration.temperature if calibration is not None else 1.0
        threshold = calibration.threshold if calibration is not None else 0.0
        result = predict(serving.loaded, texts, batch_size=self.batch_size, temperature=temperature,
                         embeddings=self.embeddings)
        probabilities, labels, abstained, below = [], [], [], []
        for row, label in zip(result.probabilities, result.predicted_labels, strict=True):
            ranked = sorted(range(len(row)), key=row.__getitem__, reverse=True)[: self.top_k]
            probabilities.append({result.labels[i]: round(row[i], 6) for i in ranked})
            unsure = max(row) < threshold
            below.append(unsure)
            abstained.append(unsure and self.abstain)
            labels.append(None if unsure and self.abstain else label)
        return Prediction(serving.version, labels, probabilities, abstained, below, result.embeddings)
