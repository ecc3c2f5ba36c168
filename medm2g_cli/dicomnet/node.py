"""A DICOM Storage SCP node: collect incoming instances per series, process each series once it
has been idle for a while, forward the result with C-STORE.

Work folder layout (``work``)::

    tmp/                  instances being received (moved into incoming/ only when complete)
    incoming/<series>/    instances of series still arriving, one file per SOP instance
    processing/<series>/  a series taken for processing (no more files are added to it)
    out/<series>/         what the processing step wrote
    failed/<series>/      input of a series whose processing failed (kept for inspection)
    unsent/<series>/      output of a series that could not be forwarded (resend with `medm2g send`)

Series and SOP instance UIDs name folders and files only if they are well-formed UIDs; anything
else is replaced by a hash, so data sent by a peer can never choose a path. One series' failure is
logged as one line and never stops the node. :meth:`StorageNode.stop` stops accepting, drops a
series still being processed (its result is never sent partially: a forward already under way is
finished) and leaves unprocessed series in ``incoming/`` (picked up by the next start with the
same work folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MedM2GError
from .peer import Peer
from .send import send_files

Log = Callable[[str], None]
# process(series_folder, output_folder, check_stop) -> files to forward; check_stop() raises NodeStopping
Process = Callable[[Path, Path, Callable[[], None]], list[Path]]

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_SUCCESS, _CANNOT_UNDERSTAND, _OUT_OF_RESOURCES = 0x0000, 0xC210, 0xA700


class NodeStopping(Exception):
    """Raised inside the processing step when the node is asked to stop (the series is dropped)."""


def safe_name(value: Any) -> str:
    """A file-system name for a UID received from a peer: the UID itself when it is a well-formed
    UID (digits and dots, at most 64 characters), else ``h`` + a hash of it."""
    v = str(value or "").strip().rstrip("\0")
    if 0 < len(v) <= 64 and _UID.match(v):
        return v
    return "h" + hashlib.sha256(v.encode("utf-8", "replace")).hexdigest()[:32]


@dataclass
class NodeConfig:
    """Where the node listens, where it forwards, and when a series counts as complete."""

    ae_title: str
    port: int
    forward: Peer
    bind: str = "127.0.0.1"
    idle_timeout: float = 5.0
    work_dir: Path | None = None  # None: a temporary folder, removed on stop
    timeout: float = 30.0  # network timeouts (association, DIMSE, forward)


@dataclass
class _Pending:
    uid: str
    last: float
    count: int = 0
    callers: set[str] = field(default_factory=set)


@dataclass
class NodeStats:
    """Counters of one node run."""

    received: int = 0
    refused: int = 0
    forwarded: int = 0
    failed: int = 0
    unsent: int = 0
    dropped: int = 0


class StorageNode:
    """The Storage SCP and the single worker that processes complete series one at a time."""

    def __init__(self, cfg: NodeConfig, process: Process, log: Log) -> None:
        self.cfg = cfg
        self.process = process
        self.log = log
        self.stats = NodeStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending: dict[str, _Pending] = {}
        self._seq = 0
        self._server: Any = None
        self._worker: threading.Thread | None = None
        self._own_work = cfg.work_dir is None
        self.work = Path(cfg.work_dir) if cfg.work_dir is not None else Path(tempfile.mkdtemp(prefix="medm2g-node-"))

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the work folders, pick up series left by an earlier run, start listening."""
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        for sub in ("tmp", "incoming", "processing", "out", "failed", "unsent"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        self._recover()
        ae = AE(ae_title=self.cfg.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        ae.require_called_aet = True  # callers must address this node by its AE title
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.cfg.timeout
        ae.maximum_associations = 16
        try:
            self._server = ae.start_server((self.cfg.bind, self.cfg.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        except OSError as exc:
            from ..errors import ConfigError

            raise ConfigError(f"cannot listen on {self.cfg.bind}:{self.cfg.port} ({exc.strerror or exc})",
                              "choose a free port with --port (ports below 1024 need root)") from exc
        self._worker = threading.Thread(target=self._work_loop, name="medm2g-node-worker", daemon=True)
        self._worker.start()
        self.log(f"listening as {self.cfg.ae_title} on {self.cfg.bind}:{self.cfg.port}; a series is complete "
                 f"after {self.cfg.idle_timeout:g} s without new instances; forwarding to {self.cfg.forward}")

    def stop(self) -> None:
        """Stop accepting, drop a series being processed (never a partial forward), end the worker."""
        self._stop.set()
        if self._server is not None:
            for assoc in list(getattr(self._server, "active_associations", [])):
                with contextlib.suppress(Exception):
                    assoc.abort()
            self._server.shutdown()
            self._server = None
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        with self._lock:
            left = len(self._pending)
        s = self.stats
        note = ""
        if left:
            note = f"; {left} series not processed" + ("" if self._own_work else f" (kept in {self.work / 'incoming'})")
        self.log(f"stopped: {s.received} instance(s) received, {s.forwarded} series forwarded, {s.failed} failed, "
                 f"{s.unsent} not forwarded, {s.dropped} dropped{note}")
        if self._own_work:
            kept = [d for sub in ("failed", "unsent") for d in (self.work / sub).iterdir()]
            if kept:  # nothing is lost: failed inputs and unsent outputs outlive the temporary folder
                self.log(f"kept {self.work} ({len(kept)} failed or unsent series in failed/ and unsent/)")
            else:
                shutil.rmtree(self.work, ignore_errors=True)

    def serve(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (by a signal handler), then :meth:`stop`."""
        self.start()
        try:
            while not stop.wait(0.2):
                pass
        finally:
            self.stop()

    def _recover(self) -> None:
        for f in (self.work / "tmp").iterdir():  # instances whose reception was cut off by a crash
            f.unlink(missing_ok=True)
        now = time.monotonic()
        for d in sorted((self.work / "incoming").iterdir()):
            if d.is_dir():
                n = sum(1 for f in d.iterdir() if f.is_file())
                self._pending[d.name] = _Pending(d.name, now, n, {"an earlier run"})
        for d in sorted((self.work / "processing").iterdir()):  # interrupted by a crash: keep for inspection
            shutil.move(str(d), str(self._unique(self.work / "failed", d.name)))
        if self._pending:
            self.log(f"resuming {len(self._pending)} series left in {self.work / 'incoming'}")

    # -- receiving ----------------------------------------------------------------------------------

    def _on_store(self, event: Any) -> int:
        """EVT_C_STORE handler (runs in an association thread)."""
        caller = str(getattr(event.assoc.requestor, "ae_title", "?")).strip()
        if self._stop.is_set():
            return _OUT_OF_RESOURCES
        try:
            raw = event.encoded_dataset(include_meta=True)
            series_uid, sop_uid = self._identify(raw)
        except Exception as exc:  # noqa: BLE001 - anything a peer sends must not stop the node
            with self._lock:
                self.stats.refused += 1
            self.log(f"refused an instance from {caller}: it cannot be decoded as DICOM "
                     f"({' '.join(str(exc).split())[:100]})")
            return _CANNOT_UNDERSTAND
        key = safe_name(series_uid)
        fd, tmp_name = tempfile.mkstemp(prefix="rx-", suffix=".part", dir=self.work / "tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
            with self._lock:
                folder = self.work / "incoming" / key
                folder.mkdir(exist_ok=True)
                os.replace(tmp_name, folder / f"{safe_name(sop_uid)}.dcm")
                p = self._pending.setdefault(key, _Pending(series_uid, 0.0))
                p.last, p.count = time.monotonic(), p.count + 1
                p.callers.add(caller)
                self.stats.received += 1
        except OSError as exc:
            Path(tmp_name).unlink(missing_ok=True)
            self.log(f"could not store an instance from {caller}: {exc.strerror or exc} — check free disk space")
            return _OUT_OF_RESOURCES
        return _SUCCESS

    @staticmethod
    def _identify(raw: bytes) -> tuple[str, str]:
        from pydicom import dcmread

        ds = dcmread(io.BytesIO(raw), stop_before_pixels=True,
                     specific_tags=["SeriesInstanceUID", "SOPInstanceUID"])
        series, sop = ds.get("SeriesInstanceUID"), ds.get("SOPInstanceUID")
        if not series or not sop:
            raise ValueError("no SeriesInstanceUID or SOPInstanceUID")
        return str(series), str(sop)

    # -- processing ---------------------------------------------------------------------------------

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise NodeStopping

    def _unique(self, parent: Path, name: str) -> Path:
        self._seq += 1
        return parent / (name if not (parent / name).exists() else f"{name}-{self._seq}")

    def _take_complete(self) -> tuple[Path, _Pending] | None:
        """Move the oldest idle series from incoming/ to processing/ (later instances of the same
        series start a new batch)."""
        now = time.monotonic()
        with self._lock:
            ready = sorted((p.last, k) for k, p in self._pending.items() if now - p.last >= self.cfg.idle_timeout)
            if not ready:
                return None
            key = ready[0][1]
            info = self._pending.pop(key)
            dest = self._unique(self.work / "processing", key)
            os.replace(self.work / "incoming" / key, dest)
        return dest, info

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            job = self._take_complete()
            if job is None:
                self._stop.wait(0.2)
                continue
            try:
                self._handle(*job)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                self.log(f"internal error while handling series: {type(exc).__name__}: {exc}")

    def _handle(self, folder: Path, info: _Pending) -> None:
        uid = info.uid
        out = self.work / "out" / folder.name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        self.log(f"series {uid}: {info.count} instance(s) from {', '.join(sorted(info.callers))}; processing")
        t0 = time.perf_counter()
        try:
            files = self.process(folder, out, self._check_stop)
        except NodeStopping:
            self.stats.dropped += 1
            self.log(f"series {uid}: dropped (the node is stopping); nothing was forwarded")
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
            return
        except Exception as exc:  # noqa: BLE001 - one series' failure never stops the node
            self.stats.failed += 1
            why = exc.one_line() if isinstance(exc, MedM2GError) else f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            kept = self._unique(self.work / "failed", folder.name)
            shutil.move(str(folder), str(kept))
            shutil.rmtree(out, ignore_errors=True)
            self.log(f"series {uid}: failed — {why} (input kept in {kept})")
            return
        t1 = time.perf_counter()
        rep = send_files(files, self.cfg.forward, calling_ae=self.cfg.ae_title, timeout=self.cfg.timeout)
        shutil.rmtree(folder, ignore_errors=True)
        if rep.ok:
            self.stats.forwarded += 1
            shutil.rmtree(out, ignore_errors=True)
            self.log(f"series {uid}: forwarded {len(rep.sent)} derived instance(s) to {self.cfg.forward} "
                     f"(processing {t1 - t0:.1f} s, sending {rep.seconds:.1f} s)")
            return
        self.stats.unsent += 1
        err = rep.error()
        kept = self._unique(self.work / "unsent", folder.name)
        shutil.move(str(out), str(kept))
        self.log(f"series {uid}: not forwarded — {err.one_line() if err else 'unknown'}; derived series kept in {kept}")
