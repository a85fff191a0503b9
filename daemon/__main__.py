"""``python -m daemon`` is the ``lifelong`` command."""

from daemon.cli import app

app(prog_name="lifelong")
