"""The root of every error the daemon raises, so a caller can catch the daemon's own failures apart
from bugs (``storage.errors.StorageError`` and ``learners.errors.LearnerError`` do the same for their
packages).

    DaemonError
     ├── config.ConfigError               settings that cannot be used (names the key)
     ├── ingest.broker.BrokerError         the embedded broker would not start or answer
     ├── ingest.produce.ProduceError       records that could not be read or sent
     ├── training.lifecycle.ActionRefused  an operator action refused; production unchanged
     │    └── UnknownVersion               the named version does not exist
     ├── training.retrain.RetrainRefused   a retrain that cannot start (no lease, closing)
     ├── serving.predictor.NoProductionModel  nothing promoted yet
     ├── serving.events.PublishError       a promotion event the broker did not take
     ├── control.api.Refused / Unavailable / NotFound   what the API answers 409 / 503 / 404
     └── control.client.ApiError           the CLI's request answered with an error

Each error is defined beside the code that raises it; ``tests/unit/daemon/test_layout.py``
checks that every exception class under ``daemon/`` derives from this one.
"""

from __future__ import annotations

__all__ = ["DaemonError"]


class DaemonError(Exception):
    """Root of every error ``daemon`` raises."""
