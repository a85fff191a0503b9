"""The control plane: HTTP API, its request guard and JSON views, the CLI and its HTTP client.

Everything an operator touches lives here; it drives the daemon only through the control
plane object the runtime wires in, never through the ingest or training internals directly.
"""
