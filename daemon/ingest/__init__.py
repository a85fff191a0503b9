"""Ingestion: the input contract, the Kafka consumer that stores records, and the broker helpers.

Imports only the top-level ``daemon.config``, ``daemon.metrics`` and ``storage``; nothing here
knows about training, serving or the control plane.
"""
