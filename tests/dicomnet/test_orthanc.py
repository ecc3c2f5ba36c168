"""End to end with a real Orthanc: Orthanc sends a study to `medm2g dicom-node`, the node forwards
the synthetic series back to Orthanc, the test reads it over Orthanc's REST API.

Orthanc (Debian package `orthanc`) is started by the test on free loopback ports with a config and
storage in a temporary folder, and stopped at the end; it is never a system service here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pydicom
import pytest
from net_helpers import LOOPBACK, dicom_series, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
ORTHANC = shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)), None)

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(ORTHANC is None, reason="the Orthanc binary is not installed (apt-get install orthanc)")]


class Orthanc:
    """An Orthanc process of the test's own: DICOM and HTTP on free loopback ports, storage in tmp."""

    def __init__(self, root: Path, node_port: int, lua: Path | None = None) -> None:
        self.dicom_port, self.http_port = free_port(), free_port()
        root.mkdir()
        cfg = {
            "Name": "medm2g-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
            "DicomAet": "ORTHANC", "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
            "DicomAlwaysAllowStore": True, "DicomCheckModalityHost": False, "DicomScuTimeout": 30,
            "DicomModalities": {"medm2g": ["MEDM2G", LOOPBACK, node_port]},
            "HttpProxy": "", "OrthancExplorerEnabled": False, "WebDavEnabled": False, "SaveJobs": False,
            "StableAge": 1, "ConcurrentJobs": 1, "LuaScripts": [str(lua)] if lua else [],
        }
        (root / "orthanc.json").write_text(json.dumps(cfg))
        self.log = open(root / "orthanc.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(ORTHANC), str(root / "orthanc.json")], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=root)
        self.root = root
        wait_for(lambda: self._alive(), 60, "Orthanc's REST API")

    def _alive(self) -> bool:
        assert self.proc.poll() is None, (self.root / "orthanc.log").read_text()[-2000:]
        try:
            self.get("/system")
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        req = urllib.request.Request(f"http://{LOOPBACK}:{self.http_port}{path}", data=body, method=method)
        with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310 - loopback only
            data = r.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.mark.parametrize("route", ["rest", pytest.param("lua", marks=pytest.mark.slow)])
def test_orthanc_study_through_the_node(route: str, tmp_path: Path, tiny_weights: Path) -> None:
    """``rest``: the test asks Orthanc to send the study (POST /modalities/medm2g/store). ``lua``: the
    README's routing script (examples/orthanc/route-to-medm2g.lua) sends each stable MR series, and
    must not send the synthetic series back to the node."""
    node_port = free_port()
    lua = REPO / "examples" / "orthanc" / "route-to-medm2g.lua" if route == "lua" else None
    orthanc = Orthanc(tmp_path / "orthanc", node_port, lua)
    node = None
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        node = subprocess.Popen(
            [sys.executable, "-m", "medm2g_cli", "dicom-node", "--port", str(node_port), "--ae-title", "MEDM2G",
             "--task", "mri2ct", "--forward", f"ORTHANC@{LOOPBACK}:{orthanc.dicom_port}",
             "--weights", str(tiny_weights), "--steps", "2", "--device", "cpu", "--idle-timeout", "1"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
        lines: list[str] = []

        def pump() -> None:
            assert node is not None and node.stderr is not None
            for line in node.stderr:
                lines.append(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        wait_for(lambda: any("listening as MEDM2G" in ln for ln in lines) or node.poll() is not None, 60, "the node")
        assert node.poll() is None, lines

        # the study goes into Orthanc over its REST API ...
        src = dicom_series(tmp_path / "mr", "MR_small.dcm", n=5)
        for f in sorted(src.iterdir()):
            orthanc.request("POST", "/instances", f.read_bytes())
        (study,) = orthanc.get("/studies")
        (src_series,) = orthanc.get(f"/studies/{study}/series")
        # ... and Orthanc sends it to the node as it would route it to any modality (C-STORE)
        if route == "rest":
            orthanc.request("POST", "/modalities/medm2g/store", study.encode())

        def derived() -> list[dict[str, Any]]:
            return [s for s in orthanc.get(f"/studies/{study}/series")
                    if s["ID"] != src_series["ID"] and len(s["Instances"]) == 5]

        (out,) = wait_for(derived, 180, "the synthetic series back in Orthanc")
        wait_for(lambda: any("forwarded 5 derived instance(s)" in ln for ln in lines), 30, "the node's log line")
        files = [pydicom.dcmread(io.BytesIO(orthanc.get(f"/instances/{i}/file"))) for i in out["Instances"]]
        if route == "lua":  # once the synthetic series is stable too, Lua must leave it alone
            wait_for(lambda: orthanc.get(f"/series/{out['ID']}")["IsStable"], 30, "the synthetic series to be stable")
            time.sleep(4)  # a wrong route would show within the node's 1 s idle timeout
            assert len(orthanc.get("/jobs")) == 1  # Lua started one store job: the MR series
        processed = sum("; processing" in ln for ln in lines)
        study_tags = orthanc.get(f"/studies/{study}")["MainDicomTags"]
    finally:
        if node is not None and node.poll() is None:
            node.send_signal(signal.SIGTERM)
            assert node.wait(timeout=60) == 0
        orthanc.stop()
    src_ds = pydicom.dcmread(next(src.iterdir()))
    assert out["MainDicomTags"]["SeriesInstanceUID"] != str(src_ds.SeriesInstanceUID)
    assert out["MainDicomTags"]["Modality"] == "CT"
    assert study_tags["StudyInstanceUID"] == str(src_ds.StudyInstanceUID)
    for ds in files:  # what Orthanc stored is the node's synthetic CT, in the source study
        assert ds.StudyInstanceUID == src_ds.StudyInstanceUID
        assert ds.SeriesInstanceUID == out["MainDicomTags"]["SeriesInstanceUID"]
        assert ds.SyntheticData == "YES"
        assert ds.pixel_array.shape == (src_ds.Rows, src_ds.Columns)
    assert not any("Traceback" in ln or ": failed" in ln for ln in lines), lines
    assert processed == 1, lines  # the synthetic series was not routed back
