"""Helpers of the DICOM networking tests: a pynetdicom Storage SCP on a free loopback port, free
ports, DICOM series built from pydicom's test files, and waiting with a deadline."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location("_infer_helpers", Path(__file__).parents[1] / "inference" / "infer_helpers.py")
assert _spec is not None and _spec.loader is not None
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
dicom_series: Callable[..., Path] = _helpers.dicom_series  # n copies of a pydicom test file as one series

LOOPBACK = "127.0.0.1"


def run_cli(args: list[str]) -> int:
    """Run ``medm2g ARGS`` in this process; its exit code."""
    from medm2g_cli.main import run

    try:
        run(args)
    except SystemExit as ex:
        return int(ex.code or 0)
    return 0


def free_port() -> int:
    """A TCP port free on the loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``cond`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class StoreSCP:
    """A real pynetdicom Storage SCP on 127.0.0.1 that keeps every dataset it receives
    (``refuse``: SOP class UIDs it does not support, so their presentation contexts are rejected)."""

    def __init__(self, ae_title: str = "STORE", refuse: tuple[str, ...] = ()) -> None:
        self.ae_title = ae_title
        self.refuse = set(refuse)
        self.port = free_port()
        self.received: list[Any] = []
        self.lock = threading.Lock()
        self.server: Any = None

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{LOOPBACK}:{self.port}"

    def start(self) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = True  # a wrong called AE title is rejected, as most PACS do
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax not in self.refuse:
                ae.add_supported_context(cx.abstract_syntax)

        def on_store(event: Any) -> int:
            ds = event.dataset
            ds.file_meta = event.file_meta
            with self.lock:
                self.received.append(ds)
            return 0x0000

        self.server = ae.start_server((LOOPBACK, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def series(self) -> dict[str, list[Any]]:
        """Received datasets grouped by SeriesInstanceUID."""
        out: dict[str, list[Any]] = {}
        with self.lock:
            for ds in self.received:
                out.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
        return out


def mixed_geometry_series(folder: Path) -> Path:
    """An MR series whose middle slice has another matrix and pixel spacing (mixed geometry)."""
    import pydicom

    dicom_series(folder, "MR_small.dcm", n=5)
    p = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(p)
    a = ds.pixel_array[::2, ::2].copy()
    ds.Rows, ds.Columns = a.shape
    ds.PixelSpacing = [float(v) * 2 for v in ds.PixelSpacing]
    ds.PixelData = a.tobytes()
    ds.save_as(p)
    return folder


def text_sr(path: Path, study_uid: str | None = None) -> Path:
    """A minimal Basic Text SR instance: a storage SOP class without pixels, in a series of its own."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.PatientName, ds.PatientID = "TEST^SR", "SR1"
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
