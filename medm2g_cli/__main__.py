"""``python -m medm2g_cli`` runs the CLI."""

from .main import run

run()
