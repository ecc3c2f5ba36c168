"""Run a ``medm2g`` command in the test process (no subprocess: saves the torch import)."""

from __future__ import annotations

import pytest


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``medm2g ARGS`` run through the console entry point."""
    from medm2g_cli.main import run

    capsys.readouterr()
    try:
        run(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
