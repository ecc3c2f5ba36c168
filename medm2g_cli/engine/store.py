"""Installed models: ``medm2g weights install`` and ``medm2g weights export``.

``install`` copies a model folder, or extracts a model archive, into the per-user data folder
(``<MEDM2G_HOME>/models/<name>``, :mod:`medm2g_cli.home`) and checks every file against the sha256
in ``medm2g.json`` before the folder appears there (atomic: an interrupted or refused install leaves
nothing). ``export`` writes a verified model folder as a reproducible tar (same folder -> same
bytes) for carrying to an offline machine. Archives are never trusted: members with absolute
paths, ``..``, links or special files are refused, and members are written one by one (never
``extractall``). Pickled checkpoints are refused like everywhere else.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from .. import home
from ..errors import ConfigError, InputError, OutputExistsError, WeightsError
from ..io.atomic import atomic_dir, atomic_path, check_output
from .io import read_meta, sha256_file, verify_folder

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def verification_error(path: Path, problems: dict[str, list[str]]) -> WeightsError | None:
    """The one-line error for a folder whose :func:`verify_folder` found problems (None if intact)."""
    if not any(problems.values()):
        return None
    parts = [f"{k}: {', '.join(v[:5])}{' ...' if len(v) > 5 else ''}" for k, v in problems.items() if v]
    return WeightsError(f"model folder '{path}' failed verification ({'; '.join(parts)})",
                        "restore the folder from its source; pickled files are never loaded")


def _model_files(path: Path) -> list[str]:
    """What makes up a model folder: medm2g.json, every file it hashes, and the model card."""
    meta = read_meta(path)
    files = ["medm2g.json", *sorted(meta.get("sha256", {}))]
    return files + (["README.md"] if (path / "README.md").is_file() else [])


def _is_archive(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES)


def _open_archive(p: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(p, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"'{p}' is not a readable tar archive ({exc})",
                         "pass a model folder or an archive written by `medm2g weights export`") from exc


def _safe_members(tf: tarfile.TarFile, src: Path) -> list[tarfile.TarInfo]:
    """The archive's members, refusing anything that could write outside the target folder."""
    try:
        members = tf.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"archive '{src}' is corrupt ({exc})", "export the model again") from exc
    for m in members:
        parts = PurePosixPath(m.name).parts
        if m.name.startswith(("/", "\\")) or ".." in parts or any(":" in p or "\\" in p for p in parts):
            raise InputError(f"archive '{src}' has a member with an unsafe path ('{m.name}')",
                             "only archives written by `medm2g weights export` are accepted")
        if m.issym() or m.islnk():
            raise InputError(f"archive '{src}' contains a link ('{m.name}')",
                             "links are refused; only archives written by `medm2g weights export` are accepted")
        if not (m.isfile() or m.isdir()):
            raise InputError(f"archive '{src}' contains a special file ('{m.name}')",
                             "only regular files and folders are accepted")
    return members


def _norm(member: str) -> str:
    """A member name without a leading './' (tar -C dir . writes them)."""
    name = PurePosixPath(member).as_posix()
    return name[2:] if name.startswith("./") else name


def _archive_root(members: list[tarfile.TarInfo], src: Path) -> tuple[str, str | None]:
    """(prefix to strip, top folder name) of the model inside the archive."""
    names = {_norm(m.name) for m in members if m.isfile()}
    if "medm2g.json" in names:
        return "", None
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1:
        top = next(iter(tops))
        if f"{top}/medm2g.json" in names:
            return top + "/", top
    raise InputError(f"archive '{src}' holds no model (no medm2g.json at its top or in its one top folder)",
                     "pass an archive written by `medm2g weights export`")


def _extract(tf: tarfile.TarFile, members: list[tarfile.TarInfo], prefix: str, dest: Path) -> None:
    for m in members:
        if not m.isfile():
            continue
        name = _norm(m.name)
        if not name.startswith(prefix):
            continue
        target = dest.joinpath(*PurePosixPath(name[len(prefix):]).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tf.extractfile(m)
        if src is None:
            continue
        with src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)


def _write_default(name: str) -> None:
    with atomic_path(home.data_home() / home.DEFAULT_MODEL_FILE, overwrite=True) as tmp:
        tmp.write_text(name + "\n", encoding="utf-8")


def install_model(src: Path, *, name: str | None = None, overwrite: bool = False,
                  make_default: bool | None = None) -> dict[str, Any]:
    """Install a model folder or archive into ``<MEDM2G_HOME>/models/<name>``, hash-checked.

    ``make_default``: True makes it the default model, None does so only if no default is set yet.
    """
    src = Path(src)
    if not src.exists():
        raise InputError(f"'{src}' does not exist", "pass a model folder or an archive from `medm2g weights export`")
    archive = _is_archive(src)
    if not archive and not src.is_dir():
        raise InputError(f"'{src}' is neither a model folder nor a .tar/.tar.gz archive",
                         "pass a model folder or an archive from `medm2g weights export`")
    tf = _open_archive(src) if archive else None
    try:
        if tf is not None:
            members = _safe_members(tf, src)
            prefix, top = _archive_root(members, src)
            default_name = top or src.name.split(".")[0]
        else:
            err = verification_error(src, verify_folder(src))
            if err is not None:
                raise err
            default_name = src.resolve().name
        name = name or default_name
        if not home.valid_model_name(name):
            raise ConfigError(f"'{name}' is not a usable model name",
                              "use letters, digits, '.', '_' or '-' (e.g. --name medm2g-demo)")
        dest = home.models_dir() / name
        if dest.exists() and not overwrite:
            raise OutputExistsError(f"model '{name}' is already installed in '{dest}'",
                                    "pass --overwrite to replace it, or --name to install it under another name")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(dest, overwrite=overwrite) as tmp:
            if tf is not None:
                _extract(tf, members, prefix, tmp)
                read_meta(tmp)
            else:
                for rel in _model_files(src):
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src / rel, tmp / rel)
            # The copy itself is checked, so a bad disk or a tampered archive never installs.
            err = verification_error(src, verify_folder(tmp))
            if err is not None:
                raise err
            n_files = sum(1 for p in tmp.rglob("*") if p.is_file())
    finally:
        if tf is not None:
            tf.close()
    current = home.default_model_name()
    is_default = bool(make_default) or (make_default is None and (current is None or home.installed_model(current) is None))
    if is_default:
        _write_default(name)
    return {"name": name, "path": str(dest), "files": n_files, "default": is_default or current == name,
            "home": str(home.data_home())}


def export_model(src: Path, out: Path, *, name: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write the verified model folder ``src`` as a tar (``.tar.gz``/``.tgz``: gzip) of ``<name>/...``,
    byte-identical for the same folder."""
    src, out = Path(src), Path(out)
    if not out.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise ConfigError(f"cannot tell the archive type from '{out.name}'", "end -o with .tar or .tar.gz")
    check_output(out, overwrite)
    err = verification_error(src, verify_folder(src))
    if err is not None:
        raise err
    name = name or src.resolve().name
    if not home.valid_model_name(name):
        raise ConfigError(f"'{name}' is not a usable model name", "pass --name NAME")
    files = _model_files(src)
    with atomic_path(out, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as raw:
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if out.name.lower().endswith(("gz", "tgz")) else None
            sink: Any = gz if gz is not None else raw
            with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tf:
                for rel in files:
                    info = tarfile.TarInfo(f"{name}/{rel}")
                    info.size = (src / rel).stat().st_size
                    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
                    with open(src / rel, "rb") as fh:
                        tf.addfile(info, fh)
            if gz is not None:
                gz.close()
    return {"output": str(out), "name": name, "files": len(files), "bytes": os.path.getsize(out),
            "sha256": sha256_file(out)}

