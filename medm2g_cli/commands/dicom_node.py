"""``medm2g dicom-node``: a DICOM Storage SCP that translates each received series and forwards it."""

from __future__ import annotations

import datetime as _dt
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import choices
from ..choices import value
from ..inference.runtime import InferenceSettings
from . import _infer_options as opts

EPILOG = (
    "Examples:\n\n"
    "  medm2g dicom-node --port 11112 --ae-title MEDM2G --task mri2ct --forward ORTHANC@127.0.0.1:4242\n\n"
    "  medm2g dicom-node --bind 0.0.0.0 --port 11112 --task t1-t2 --forward PACS@10.0.0.5:104 "
    "--idle-timeout 30 --work-dir /var/lib/medm2g-node --log-file node.log --sampler dpm++ --steps 20\n\n"
    "Instances are collected per series (SeriesInstanceUID); a series is complete when no instance of it "
    "arrived for --idle-timeout seconds. It is then translated like `medm2g translate` does (a derived "
    "series in the same study, SyntheticData YES) and the result is sent to --forward. A failing series "
    "is logged and the node keeps serving. SIGTERM or Ctrl-C stop it cleanly (exit 0)."
)


def _line_logger(log_file: Path | None) -> Callable[[str], None]:
    """Timestamped lines on stderr (and appended to ``log_file``); safe to call from any thread."""
    lock = threading.Lock()
    fh = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115 - closed at exit

    def log(message: str) -> None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{stamp} medm2g-node: {' '.join(message.split())}\n"
        with lock:
            sys.stderr.write(line)
            sys.stderr.flush()
            if fh is not None:
                fh.write(line)
                fh.flush()

    return log


@opts.inference_options()
def dicom_node(
    *,
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.", show_default=False)],
    task: Annotated[choices.Direction, typer.Option("--task", parser=choices.parse_direction, help="A translate direction: mri2ct, ct2mri, t1-t2, ...", show_default=False)],
    forward: Annotated[str, typer.Option("--forward", help="Where derived series go, AE@host:port.", show_default=False)],
    ae_title: Annotated[str, typer.Option("--ae-title", help="This node's AE title (callers must address it).")] = "MEDM2G",
    bind: Annotated[str, typer.Option("--bind", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    idle_timeout: Annotated[float, typer.Option("--idle-timeout", help="Seconds without a new instance after which a series is complete.")] = 10.0,
    work_dir: Annotated[Path | None, typer.Option("--work-dir", help="Keep received series here (default: a temporary folder, removed on exit unless something failed).", show_default=False)] = None,
    log_file: Annotated[Path | None, typer.Option("--log-file", help="Also append the log lines to this file.", show_default=False)] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Network timeout in seconds.")] = 30.0,
    samples: opts.Samples = 1,
    axis: opts.Axis = choices.Axis.axial,
    settings: InferenceSettings,  # the shared options (opts.inference_options)
) -> None:
    """Run a DICOM node: receive series (C-STORE SCP), translate each, forward the derived series."""
    from ..api import parse_direction
    from ..api.series import translate_series
    from ..dicomnet import parse_peer, validate_ae_title
    from ..dicomnet.node import NodeConfig, StorageNode
    from ..errors import ConfigError, OutputError
    from ..inference.runtime import check_branches, resolve_weights

    # Everything that can be wrong with the options fails here, before the node listens.
    peer = parse_peer(forward, "--forward")
    title = validate_ae_title(ae_title, "--ae-title")
    direction: str = value(task)
    src, tgt = parse_direction(direction)
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not in 1..65535", "e.g. --port 11112")
    if idle_timeout <= 0 or timeout <= 0:
        raise ConfigError("--idle-timeout and --timeout must be positive", "e.g. --idle-timeout 10")
    if samples < 1:
        raise ConfigError(f"--samples {samples} is not positive", "use 1 or more")
    settings.validate()
    check_branches(resolve_weights(settings.weights), [src, tgt])
    if log_file is not None and not log_file.parent.is_dir():
        raise OutputError(f"log folder '{log_file.parent}' does not exist", "create it first")
    if work_dir is not None and not work_dir.parent.is_dir():
        raise OutputError(f"work folder parent '{work_dir.parent}' does not exist", "create it first")

    log = _line_logger(log_file)
    cfg = NodeConfig(ae_title=title, port=port, forward=peer, bind=bind, idle_timeout=idle_timeout,
                     work_dir=work_dir, timeout=timeout)
    node = StorageNode(cfg, translate_series(direction, settings, samples=samples, axis=value(axis), log=log), log)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if not stop.is_set():
            log(f"{signal.Signals(signum).name}: stopping")
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        node.serve(stop)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def register(app: typer.Typer) -> None:
    """Add ``dicom-node`` to the root app."""
    app.command("dicom-node", epilog=EPILOG)(dicom_node)
