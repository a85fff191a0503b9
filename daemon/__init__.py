"""The lifelong process: configuration, ingestion, broker, API, CLI and metrics."""
