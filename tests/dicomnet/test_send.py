"""`medm2g send`: C-STORE over real sockets on the loopback against a pynetdicom Storage SCP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from net_helpers import LOOPBACK, dicom_series, free_port
from net_helpers import run_cli as _run

from medm2g_cli.dicomnet import parse_peer
from medm2g_cli.errors import ConfigError

pytestmark = pytest.mark.timeout(120)


def _files(tmp_path: Path, pydicom_file) -> tuple[Path, list[Path]]:
    """A 5-slice MR series plus one CT file (two SOP classes, two transfer syntaxes) in one folder."""
    folder = dicom_series(tmp_path / "in", "MR_small.dcm", n=5)
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "ct.dcm")
    return folder, sorted(folder.iterdir())


def test_send_folder_in_one_association(tmp_path: Path, pydicom_file, scp, capsys: pytest.CaptureFixture[str]) -> None:
    folder, files = _files(tmp_path, pydicom_file)
    store = scp()
    capsys.readouterr()
    assert _run(["send", str(folder), "--to", store.address, "--calling-ae", "TESTSCU"]) == 0
    err = capsys.readouterr().err
    assert f"sent 6 file(s) to {store.address} in 1 association(s)" in err
    got = {str(ds.SOPInstanceUID): ds for ds in store.received}
    assert len(got) == 6
    for f in files:  # every instance arrived whole: same UID, same pixels
        src = pydicom.dcmread(f)
        assert got[str(src.SOPInstanceUID)].PixelData == src.PixelData
    assert {str(ds.SOPClassUID) for ds in store.received} == {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.2"}


def test_unreachable_peer_one_line(tmp_path: Path, pydicom_file, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = _files(tmp_path, pydicom_file)
    port = free_port()  # nothing listens there
    capsys.readouterr()
    assert _run(["send", str(folder), "--to", f"NOBODY@{LOOPBACK}:{port}", "--timeout", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot reach DICOM peer NOBODY@{LOOPBACK}:{port} (")
    assert "none of the 6 file(s) was sent" in err[0]


def test_peer_refusing_a_sop_class(tmp_path: Path, pydicom_file, scp, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = _files(tmp_path, pydicom_file)
    store = scp(refuse=("1.2.840.10008.5.1.4.1.1.2",))  # no CT Image Storage
    capsys.readouterr()
    assert _run(["send", str(folder), "--to", store.address, "--json"]) == 2
    cap = capsys.readouterr()
    rep = json.loads(cap.out)
    assert [Path(f["file"]).name for f in rep["failed"]] == ["ct.dcm"]
    assert "refused SOP class CT Image Storage" in rep["failed"][0]["reason"]
    assert len(rep["sent"]) == 5 and len(store.received) == 5  # the MR files still went through
    assert cap.err.strip().splitlines()[-1].startswith(f"error: 1 of 6 file(s) were not sent to {store.address}")
    # without --json the file not sent is named
    assert _run(["send", str(folder / "ct.dcm"), str(folder / "img_000.dcm"), "--to", store.address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"not sent: {folder / 'ct.dcm'} — peer refused SOP class CT Image Storage (1.2.840.10008.5.1.4.1.1.2)"
    assert err[-1].startswith("error: 1 of 2 file(s) were not sent")


def test_peer_refusing_everything_and_wrong_ae(tmp_path: Path, pydicom_file, scp, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = _files(tmp_path, pydicom_file)
    store = scp(refuse=("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"))
    capsys.readouterr()
    assert _run(["send", str(folder), "--to", store.address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused every SOP class" in err[0] and "none of the 6 file(s) was sent" in err[0]
    assert store.received == []


def test_peer_rejecting_the_association(tmp_path: Path, pydicom_file, scp, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = _files(tmp_path, pydicom_file)
    store = scp("STORE")
    capsys.readouterr()
    assert _run(["send", str(folder), "--to", f"WRONGAE@{LOOPBACK}:{store.port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: DICOM peer WRONGAE@{LOOPBACK}:{store.port} rejected the association (")
    assert "Called AE title not recognised" in err[0] and store.received == []


def test_non_dicom_file_is_reported_not_lost(tmp_path: Path, pydicom_file, scp, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = _files(tmp_path, pydicom_file)
    (folder / "notes.txt").write_text("not an image")
    store = scp()
    capsys.readouterr()
    assert _run(["send", str(folder), "--to", store.address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"not sent: {folder / 'notes.txt'} — not a DICOM file")
    assert err[-1].startswith("error: 1 of 7 file(s) were not sent") and len(store.received) == 6


@pytest.mark.parametrize("spec", ["ORTHANC127.0.0.1:4242", "ORTHANC@127.0.0.1", "ORTHANC@127.0.0.1:0",
                                  "ORTHANC@127.0.0.1:99999", "A\\B@127.0.0.1:4242", "TOOLONGAETITLE1234@h:1",
                                  "X@bad host:1"])
def test_bad_peer_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_peer(spec)


def test_peer_spec_parsed() -> None:
    p = parse_peer("ORTHANC@127.0.0.1:4242")
    assert (p.ae_title, p.host, p.port) == ("ORTHANC", "127.0.0.1", 4242)
    assert parse_peer("A@[::1]:104").host == "::1"


def test_command_modules_are_light() -> None:
    import subprocess
    import sys

    code = ("import sys, medm2g_cli.main, medm2g_cli.commands.send, medm2g_cli.commands.dicom_node, "
            "medm2g_cli.dicomnet.node, medm2g_cli.dicomnet.send; "
            "heavy = [m for m in ('torch', 'diffusers', 'pynetdicom') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
