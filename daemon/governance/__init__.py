"""Data governance: stored data leaves on schedule or on request.

``retention`` deletes what is older than ``ingest.retention_days`` in bounded batches;
the forget operation itself lives in the control plane (it is an operator's action) over
``storage.deletion``. Imports only the shared modules, ``storage`` and ``learners``.
"""
