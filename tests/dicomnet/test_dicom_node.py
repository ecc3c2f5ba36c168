"""`medm2g dicom-node`: a Storage SCP that translates each received series and forwards it.

Real sockets on the loopback: series are sent with `medm2g send`'s SCU, the derived series is
received by a pynetdicom Storage SCP started by the test. Tiny random weights, 2 sampler steps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
from net_helpers import LOOPBACK, dicom_series, free_port, mixed_geometry_series, run_cli, text_sr, wait_for

from medm2g_cli.api.series import translate_series
from medm2g_cli.dicomnet import parse_peer
from medm2g_cli.dicomnet.node import NodeConfig, StorageNode, safe_name
from medm2g_cli.dicomnet.send import send_files
from medm2g_cli.inference.runtime import InferenceSettings

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[2]


def _node(tmp_path: Path, weights: Path, forward: str, lines: list[str], work: Path | None = None) -> StorageNode:
    st = InferenceSettings(weights=weights, device="cpu", steps=2, batch_size=8)
    cfg = NodeConfig(ae_title="MEDM2G", port=free_port(), forward=parse_peer(forward), idle_timeout=1.0,
                     work_dir=work, timeout=20)
    node = StorageNode(cfg, translate_series("mri2ct", st, log=lines.append), lines.append)
    node.start()
    return node


def _to(node: StorageNode) -> object:
    return parse_peer(f"MEDM2G@{LOOPBACK}:{node.cfg.port}")


def test_node_translates_and_forwards(tmp_path: Path, tiny_weights: Path, scp) -> None:
    target = scp("PACS")
    lines: list[str] = []
    node = _node(tmp_path, tiny_weights, target.address, lines)
    work = node.work
    try:
        from pynetdicom import AE

        echo = AE(ae_title="ECHOSCU")
        echo.add_requested_context("1.2.840.10008.1.1")  # Verification: how a PACS tests a modality entry
        assoc = echo.associate(LOOPBACK, node.cfg.port, ae_title="MEDM2G")
        assert assoc.is_established and int(assoc.send_c_echo().Status) == 0
        assoc.release()
        wrong = echo.associate(LOOPBACK, node.cfg.port, ae_title="SOMEONE")  # callers must name the node
        assert wrong.is_rejected
        src = dicom_series(tmp_path / "mr", "MR_small.dcm", n=5)
        rep = send_files(sorted(src.iterdir()), _to(node), calling_ae="MODALITY")
        assert rep.ok and len(rep.sent) == 5
        wait_for(lambda: any("forwarded" in ln for ln in lines), 120, "the derived series to be forwarded")
        series = target.series()
    finally:
        node.stop()
    source = [pydicom.dcmread(p) for p in sorted(src.iterdir())]
    assert len(series) == 1
    (uid, derived), = series.items()
    assert uid != str(source[0].SeriesInstanceUID)
    assert len(derived) == 5
    for ds in derived:
        assert ds.StudyInstanceUID == source[0].StudyInstanceUID
        assert ds.SyntheticData == "YES"
        assert ds.Modality == "CT"
        assert ds.Rows == source[0].Rows and ds.Columns == source[0].Columns
    assert any(f"series {source[0].SeriesInstanceUID}: forwarded 5 derived instance(s) to {target.address}" in ln
               for ln in lines)
    assert lines[-1].startswith("stopped: 5 instance(s) received, 1 series forwarded, 0 failed")
    assert not work.exists()  # the temporary work folder is removed when nothing failed


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # pydicom on the junk bytes of step 4
def test_node_survives_bad_input(tmp_path: Path, tiny_weights: Path, scp, monkeypatch: pytest.MonkeyPatch) -> None:
    from pynetdicom import AE, _config

    target = scp("PACS")
    lines: list[str] = []
    node = _node(tmp_path, tiny_weights, target.address, lines, work=tmp_path / "work")
    to = _to(node)
    try:
        # 1. a series with mixed geometry: accepted, then fails as one log line
        mixed = mixed_geometry_series(tmp_path / "mixed")
        assert send_files(sorted(mixed.iterdir()), to).ok
        # 2. a non-image SOP class (a text SR): accepted (it is a storage class), fails as one line
        sr = text_sr(tmp_path / "sr" / "sr.dcm")
        assert send_files([sr], to).ok
        # 2b. a CT series for an MRI task: refused by the translate API's modality check, one line
        ct = dicom_series(tmp_path / "ct", "CT_small.dcm", n=3)
        assert send_files(sorted(ct.iterdir()), to).ok
        # 3. an SOP class the node does not support: its presentation context is refused
        odd = text_sr(tmp_path / "odd" / "odd.dcm")
        ds = pydicom.dcmread(odd)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.3.4.5.6.7"
        ds.save_as(odd)
        rep = send_files([odd], to)
        assert not rep.ok and "refused every SOP class" in (rep.association_error or "")
        # 4. bytes that are not a DICOM data set, sent raw after a valid file meta header
        junk = tmp_path / "junk.dcm"
        head = pydicom.dcmread(sr)
        head.save_as(junk, enforce_file_format=True)
        raw = junk.read_bytes()
        meta_end = 132 + 12 + int.from_bytes(raw[140:144], "little")  # preamble + DICM + group length element
        junk.write_bytes(raw[:meta_end] + b"\x08\x00\x18\x00UI\xff\x7f" + os.urandom(64))
        monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
        ae = AE(ae_title="RAW")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.1.2.1")
        assoc = ae.associate(LOOPBACK, node.cfg.port, ae_title="MEDM2G")
        assert assoc.is_established
        status = assoc.send_c_store(junk)
        assoc.release()
        assert int(status.Status) == 0xC210
        monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", False)
        # 5. a good series after all that is still translated and forwarded
        good = dicom_series(tmp_path / "good", "MR_small.dcm", n=5)
        assert send_files(sorted(good.iterdir()), to).ok
        wait_for(lambda: any("forwarded" in ln for ln in lines), 120, "the good series to be forwarded")
        series = target.series()
    finally:
        node.stop()
    assert len(series) == 1 and len(next(iter(series.values()))) == 5
    mixed_uid = str(pydicom.dcmread(next(mixed.iterdir())).SeriesInstanceUID)
    sr_uid = str(pydicom.dcmread(sr).SeriesInstanceUID)
    ct_uid = str(pydicom.dcmread(next(ct.iterdir())).SeriesInstanceUID)
    fails = [ln for ln in lines if ": failed — " in ln]
    assert len(fails) == 3 and all("\n" not in ln for ln in fails)
    assert any(ln.startswith(f"series {ct_uid}: failed — input is CT") for ln in fails)
    assert any(ln.startswith(f"series {mixed_uid}: failed — ") for ln in fails)
    assert any(ln.startswith(f"series {sr_uid}: failed — ") for ln in fails)
    assert sum("refused an instance from RAW: it cannot be decoded as DICOM" in ln for ln in lines) == 1
    # nothing lost: the failed inputs are kept, whole, for inspection
    kept = sorted(p.name for p in (tmp_path / "work" / "failed").iterdir())
    assert kept == sorted([safe_name(mixed_uid), safe_name(sr_uid), safe_name(ct_uid)])
    assert len(list((tmp_path / "work" / "failed" / safe_name(mixed_uid)).iterdir())) == 5


def test_safe_name_never_a_path() -> None:
    assert safe_name("1.2.840.113619.2.55") == "1.2.840.113619.2.55"
    for hostile in ("../../etc", "/abs", "1.2/3", "a" * 80, "", "1.2.3\\..\\x", "1." + "2" * 70):
        name = safe_name(hostile)
        assert name.startswith("h") and len(name) == 33 and name.isalnum()


def _start_node_process(tmp_path: Path, weights: Path, forward: str, extra: list[str] | None = None
                        ) -> tuple[subprocess.Popen[str], int, list[str]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "medm2g_cli", "dicom-node", "--port", str(port), "--ae-title", "MEDM2G",
           "--task", "mri2ct", "--forward", forward, "--weights", str(weights), "--steps", "2",
           "--device", "cpu", "--idle-timeout", "1", *(extra or [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    wait_for(lambda: any("listening as MEDM2G" in ln for ln in lines) or proc.poll() is not None, 60,
             "the node to listen")
    assert proc.poll() is None, "\n".join(lines)
    return proc, port, lines


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_sigterm_idle_node_exits_cleanly(tmp_path: Path, tiny_weights: Path, scp) -> None:
    target = scp("PACS")
    log_file = tmp_path / "node.log"
    proc, port, lines = _start_node_process(tmp_path, tiny_weights, target.address, ["--log-file", str(log_file)])
    assert _stop(proc) == 0
    wait_for(lambda: any("stopped:" in ln for ln in lines), 10, "the stopped line")
    assert log_file.read_text().splitlines() == lines  # the same lines on stderr and in --log-file
    assert not any(ln.startswith("error") or "Traceback" in ln for ln in lines), lines
    with pytest.raises(AssertionError):  # the port is closed: nothing listens any more
        assert send_files([text_sr(tmp_path / "x.dcm")], parse_peer(f"MEDM2G@{LOOPBACK}:{port}"), timeout=3).ok


def test_sigterm_during_processing_never_sends_partially(tmp_path: Path, tiny_weights: Path, scp) -> None:
    target = scp("PACS")
    proc, port, lines = _start_node_process(tmp_path, tiny_weights, target.address)
    src = dicom_series(tmp_path / "mr", "MR_small.dcm", n=5)
    assert send_files(sorted(src.iterdir()), parse_peer(f"MEDM2G@{LOOPBACK}:{port}")).ok
    wait_for(lambda: any("; processing" in ln for ln in lines), 30, "processing to start")
    assert _stop(proc) == 0
    wait_for(lambda: any("stopped:" in ln for ln in lines), 10, "the stopped line")
    got = len(target.received)
    assert got in (0, 5), f"partial forward: {got} of 5 instances"
    assert any(("dropped (the node is stopping)" in ln) if got == 0 else ("forwarded 5" in ln) for ln in lines), lines
    assert not any("Traceback" in ln for ln in lines), lines


def test_node_refuses_bad_options(tmp_path: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["dicom-node", "--port", str(free_port()), "--weights", str(tiny_weights)]
    for args, msg in ((["--task", "mri2xray", "--forward", "A@127.0.0.1:1"], "unknown direction"),
                      (["--task", "mri2ct", "--forward", "A@127.0.0.1"], "lacks a port"),
                      (["--task", "mri2ct", "--forward", "A@127.0.0.1:1", "--ae-title", "X\\Y"], "AE title")):
        capsys.readouterr()
        assert run_cli(base + args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and msg in err[0]
