"""`medm2g weights install|export` and where the default model is found (MEDM2G_HOME)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from medm2g_cli import home
from medm2g_cli.inference.runtime import resolve_weights
from medm2g_cli.main import run


def _run(args: list[str]) -> int:
    try:
        run(args)
    except SystemExit as ex:
        return int(ex.code or 0)
    return 0


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("w") / "tiny"
    assert _run(["weights", "init", "--preset", "tiny", "-o", str(out), "--modalities", "text,xray", "--seed", "3"]) == 0
    (out / "README.md").write_text("# tiny\nmodel card\n")
    return out


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MEDM2G_HOME", str(h))
    monkeypatch.delenv("MEDM2G_WEIGHTS", raising=False)
    return h


def _tree(p: Path) -> dict[str, bytes]:
    return {f.relative_to(p).as_posix(): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


def test_export_install_round_trip(folder: Path, data_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tar1, tar2 = tmp_path / "a" / "m.tar", tmp_path / "b" / "m.tar"
    tar1.parent.mkdir(), tar2.parent.mkdir()
    assert _run(["weights", "export", str(folder), "-o", str(tar1)]) == 0
    assert _run(["weights", "export", str(folder), "-o", str(tar2)]) == 0
    assert tar1.read_bytes() == tar2.read_bytes()  # reproducible archive
    assert _run(["weights", "export", str(folder), "-o", str(tar1)]) == 2  # no silent replacement
    with tarfile.open(tar1) as tf:
        assert all(n.startswith("tiny/") for n in tf.getnames()) and "tiny/README.md" in tf.getnames()
    capsys.readouterr()
    assert _run(["weights", "install", str(tar1)]) == 0
    assert "installed tiny in" in capsys.readouterr().err
    dest = data_home / "models" / "tiny"
    assert _tree(dest) == _tree(folder)
    assert (data_home / "default-model").read_text().strip() == "tiny"
    assert _run(["weights", "verify", str(dest)]) == 0
    # the default model now resolves to the installed one, from anywhere
    assert resolve_weights(None) == dest
    # a second model, from a folder: installed but not made the default; reachable by name
    assert _run(["weights", "install", str(folder), "--name", "second", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "second" and info["default"] is False
    assert resolve_weights(None) == dest and resolve_weights("second") == data_home / "models" / "second"
    assert _run(["weights", "install", str(folder), "--name", "second", "--default"]) == 2  # exists
    assert _run(["weights", "install", str(folder), "--name", "second", "--default", "--overwrite"]) == 0
    assert resolve_weights(None) == data_home / "models" / "second"
    # gzip archives too
    tgz = tmp_path / "m.tar.gz"
    assert _run(["weights", "export", str(folder), "-o", str(tgz), "--name", "zipped"]) == 0
    assert _run(["weights", "install", str(tgz)]) == 0 and _tree(data_home / "models" / "zipped") == _tree(folder)


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _nothing_installed(data_home: Path) -> None:
    models = data_home / "models"
    assert not models.exists() or list(models.iterdir()) == []  # no model, no temporary folder left
    assert not (data_home / "default-model").exists()


def test_install_refuses_tampered_or_pickled(folder: Path, data_home: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    with open(bad / "text_encoder" / "config.json", "a") as f:
        f.write(" ")
    capsys.readouterr()
    assert _run(["weights", "install", str(bad)]) == 2
    assert "failed verification (mismatched: text_encoder/config.json)" in _one_error(capsys)
    _nothing_installed(data_home)
    pickled = tmp_path / "pickled"
    shutil.copytree(folder, pickled)
    (pickled / "unet_xray" / "model.ckpt").write_bytes(b"\x80\x04N.")
    assert _run(["weights", "install", str(pickled)]) == 2
    assert "pickled: unet_xray/model.ckpt" in _one_error(capsys)
    _nothing_installed(data_home)


def test_install_refuses_a_tampered_archive(folder: Path, data_home: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.tar"
    assert _run(["weights", "export", str(folder), "-o", str(good)]) == 0
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name == "tiny/unet_text/config.json":
                data = data.replace(b"{", b"{ ", 1)
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    capsys.readouterr()
    assert _run(["weights", "install", str(bad)]) == 2
    assert "mismatched: unet_text/config.json" in _one_error(capsys)
    _nothing_installed(data_home)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "fifo", "no-model", "garbage"])
def test_install_refuses_hostile_archives(kind: str, folder: Path, data_home: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    arc = tmp_path / "evil.tar"
    if kind == "garbage":
        arc.write_bytes(b"not a tar archive at all" * 40)
    else:
        with tarfile.open(arc, "w") as tf:
            meta = (folder / "medm2g.json").read_bytes()
            if kind != "no-model":
                info = tarfile.TarInfo("m/medm2g.json")
                info.size = len(meta)
                tf.addfile(info, io.BytesIO(meta))
            evil = tarfile.TarInfo({"dotdot": "m/../../escaped.txt", "absolute": "/tmp/escaped.txt",
                                    "symlink": "m/link", "hardlink": "m/hard", "fifo": "m/fifo",
                                    "no-model": "m/readme.txt"}[kind])
            if kind == "symlink":
                evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
            elif kind == "hardlink":
                evil.type, evil.linkname = tarfile.LNKTYPE, "m/medm2g.json"
            elif kind == "fifo":
                evil.type = tarfile.FIFOTYPE
            else:
                evil.size = 2
            tf.addfile(evil, io.BytesIO(b"x\n") if evil.isfile() else None)
    capsys.readouterr()
    assert _run(["weights", "install", str(arc)]) == 2
    msg = _one_error(capsys)
    expected = {"dotdot": "unsafe path", "absolute": "unsafe path", "symlink": "contains a link",
                "hardlink": "contains a link", "fifo": "special file", "no-model": "holds no model",
                "garbage": "not a readable tar archive"}[kind]
    assert expected in msg
    _nothing_installed(data_home)
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()


def test_default_model_resolution(data_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # from a source checkout with nothing installed: the checkout's demo model (keeps `make demo` working)
    demo = home.checkout_demo()
    assert demo is not None and resolve_weights(None) == demo
    # MEDM2G_WEIGHTS still wins over everything but --weights
    other = tmp_path / "other"
    other.mkdir()
    (other / "medm2g.json").write_text("{}")
    monkeypatch.setenv("MEDM2G_WEIGHTS", str(other))
    assert resolve_weights(None) == other
    monkeypatch.delenv("MEDM2G_WEIGHTS")
    # installed outside a checkout (no pyproject.toml next to the package): nothing, and the error says what to do
    monkeypatch.setattr(home, "checkout_demo", lambda: None)
    from medm2g_cli.errors import WeightsError

    with pytest.raises(WeightsError) as exc:
        resolve_weights(None)
    assert exc.value.one_line().startswith(f"no model is installed in {data_home} — install one with "
                                           "`medm2g weights install PATH|ARCHIVE`")


def test_data_home_locations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MEDM2G_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert home.data_home() == tmp_path / "xdg" / "medm2g"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert home.data_home() in (tmp_path / ".local" / "share" / "medm2g",
                                tmp_path / "Library" / "Application Support" / "medm2g")
    monkeypatch.setenv("MEDM2G_HOME", str(tmp_path / "mine"))
    assert home.data_home() == tmp_path / "mine"


def test_demo_model_states_licence_and_intended_use(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    repo = Path(__file__).resolve().parents[2]
    demo = repo / "weights" / "medm2g-demo"
    declared = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["license"]["text"]
    licence = (repo / "LICENSE").read_text()
    assert declared == "Apache-2.0" and "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the full text, not a stub
    capsys.readouterr()
    assert _run(["weights", "inspect", str(demo), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["license"] == declared
    assert "not for clinical use" in info["intended_use"]
    card = (demo / "README.md").read_text()
    assert "**Licence**: Apache-2.0" in card and "**Intended use**" in card
    assert _run(["weights", "verify", str(demo)]) == 0  # editing medm2g.json's text keys broke no hash
