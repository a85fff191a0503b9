"""The lifelong process, grouped by concern.

- ``daemon.ingest``: input contract, Kafka consumer, embedded broker, producer helpers.
- ``daemon.training``: triggers, single-flight retrain, lease, evaluation, gate, lifecycle.
- ``daemon.serving``: the hot-swapped production model and promotion events.
- ``daemon.governance``: retention of stored data (PII redaction is ingest's, at validation).
- ``daemon.control``: HTTP API, CLI and its client, the control-plane operations.

At the top sit what every concern shares (``config``, ``metrics``, ``errors``, ``logs``,
``file_safety``, ``failpoints``) and ``runtime``, which wires the concerns into one process.
Imports flow one way: the shared modules import no subpackage; ingest, training and serving
import only the shared modules, ``storage`` and ``learners`` (training may use serving's
predictor); control's API and control plane are given their collaborators by ``runtime``;
only the CLI entry point imports ``runtime``. ``tests/unit/daemon/test_layout.py`` checks it.
"""
