"""``python -m daemon`` is the ``lifelong`` command."""

from daemon.control.cli import app

app(prog_name="lifelong")
