"""The ``medm2g`` command line: a root Typer app and one module per command.

Command modules in :mod:`medm2g_cli.commands` are thin: they parse options, call the typed API and
render the result. Each exposes ``register(app)``. Heavy imports (torch, diffusers, SimpleITK)
happen inside command bodies, so ``medm2g --help`` and ``--version`` start instantly.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any

import typer

from . import __version__
from .errors import MedM2GError, MedM2GWarning

# Order here is the order in `medm2g --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "info",
    "convert",
    "register",
    "phantom",
    "prepare",
    "weights",
    "generate",
    "report",
    "translate",
    "synthesize",
    "send",
    "dicom_node",
    "pretrain",
    "evaluate",
    "demo",
)

app = typer.Typer(
    name="medm2g",
    help=(
        "MedM2G: one latent-diffusion system that generates and translates across radiology text, "
        "chest X-ray, CT and MRI.\n\n"
        "Outputs are synthetic and not for clinical use. Run `medm2g COMMAND --help` for examples."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_DEBUG = {"on": False}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"medm2g {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """medm2g root options."""
    _DEBUG["on"] = debug or bool(os.environ.get("MEDM2G_DEBUG"))


def _register_all() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.commands.{name}")
        module.register(app)


_register_all()


def _fail(message: str) -> None:
    from .safetext import printable

    # The message often quotes file names and header text: no control character reaches the terminal.
    sys.stderr.write(f"error: {printable(message)}\n")
    sys.stderr.flush()


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Usage and Click exception classes: typer may use its vendored click or the click package."""
    usage: list[type] = []
    other: list[type] = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        usage.append(mod.UsageError)
        other.append(mod.ClickException)
    return tuple(usage), tuple(other)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """medm2g's own warnings as one ``warning:`` line (control characters escaped); others as Python shows them."""
    if issubclass(category, MedM2GWarning):
        from .safetext import printable

        text = printable(" ".join(str(message).split()))
        if text not in _SHOWN:  # once per run, however many cases or files raise it
            _SHOWN.add(text)
            sys.stderr.write(f"warning: {text}\n")
            sys.stderr.flush()
        return
    _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOWWARNING = warnings.showwarning
_SHOWN: set[str] = set()


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to one line + exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("MEDM2G_DEBUG"))
    previous = _trap_sigterm()
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    _SHOWN.clear()
    warnings.filterwarnings("always", category=MedM2GWarning)  # _show_warning keeps each text to one line
    try:
        rc = app(args=args, standalone_mode=False)
        if rc == 130:  # typer turns Ctrl-C (and our SIGTERM) into Exit(130) and, non-standalone, returns it
            raise KeyboardInterrupt
        if isinstance(rc, int) and not isinstance(rc, bool) and rc != 0:  # typer.Exit(n), returned likewise
            sys.exit(rc)
    except MedM2GError as exc:
        if debug:
            raise
        _fail(exc.one_line())
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _fail("interrupted — finished outputs are kept; rerun with --continue to finish the rest")
        sys.exit(130)
    except Exception as exc:  # click usage errors and anything unexpected
        usage, click_exc = _click_exceptions()
        if isinstance(exc, usage):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        if isinstance(exc, click_exc):
            _fail(exc.format_message())  # type: ignore[attr-defined]  # a click ClickException
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if debug:
            raise
        if isinstance(exc, MemoryError):
            _fail("out of memory — lower --batch-size or use a smaller input")
            sys.exit(2)
        if isinstance(exc, OSError) and exc.errno == 28:
            _fail("no space left on device — free disk space and rerun (finished outputs are kept)")
            sys.exit(2)
        _fail(f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())} — rerun with --debug and report this")
        sys.exit(1)
    finally:
        warnings.showwarning = shown
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _trap_sigterm() -> Callable[[int, FrameType | None], Any] | int | None:
    """Make SIGTERM behave like Ctrl-C so atomic writers remove their temporary files (the default
    action would kill the process on the spot and leave them behind). Returns the previous handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


if __name__ == "__main__":
    run()
