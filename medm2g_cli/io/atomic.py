"""Atomic, non-clobbering output writing.

Every writer goes through :func:`atomic_path`: the data is written to a hidden temporary file in
the destination folder (an unpredictable ``mkstemp`` name, never a fixed one a planted symlink could
redirect) and moved into place only when complete, so an interrupted or failing run never leaves a
partial output behind. Without ``overwrite`` the move refuses to replace an output that appeared
meanwhile (another process), and with it an existing folder is replaced only when medm2g wrote it
(:mod:`.outputs`). Every folder written here carries medm2g's marker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import OutputError, OutputExistsError
from .outputs import check_replaceable, check_separate, publish, write_marker


def check_output(path: str | os.PathLike[str], overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Validate an output path before any work is done.

    Raises :class:`OutputExistsError` if it exists and ``overwrite`` is false, and
    :class:`OutputError` if it is, contains or lies inside one of ``inputs``, if it is a folder
    medm2g did not write (with ``overwrite``), or if its parent folder is missing or not writable.
    """
    p = Path(path)
    check_separate([p], inputs)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"output '{p}' already exists", "pass --overwrite to replace it")
    if p.exists():
        check_replaceable(p)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"output folder '{parent}' does not exist", "create it first or choose another -o")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder '{parent}' is not writable", "choose a writable location with -o")
    return p


def _suffixes(p: Path) -> str:
    return "".join(p.suffixes[-2:]) if p.name.endswith(".nii.gz") else p.suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it into place atomically.

    The temporary name keeps the suffix (``.nii.gz`` included) so format-sniffing writers work.
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    dest = Path(path)
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"output '{dest}' already exists", "pass --overwrite to replace it")
    parent = dest.parent if str(dest.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".part{_suffixes(dest)}", dir=parent)
    except OSError as exc:  # read-only mount, not a folder, quota: the pre-check cannot see them all
        raise OutputError(f"could not write '{dest}': {exc.strerror or exc}", "choose a writable location with -o") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    _default_mode(tmp, 0o666)  # mkstemp makes 0600 files
    try:
        yield tmp
        _publish(tmp, dest, overwrite)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"could not write '{dest}': {exc.strerror or exc}", "check free disk space and permissions") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    try:
        publish(tmp, dest, replace=overwrite)
    except FileExistsError as exc:  # another process finished the same output first
        raise OutputExistsError(f"output '{dest}' already exists", "pass --overwrite to replace it") from exc


def _default_mode(path: Path, base: int) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, base & ~mask)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it replaces ``path`` as a whole."""
    dest = Path(path)
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"output '{dest}' already exists", "pass --overwrite to replace it")
    if dest.exists():
        check_replaceable(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=parent))
    except OSError as exc:
        raise OutputError(f"could not write '{dest}': {exc.strerror or exc}", "choose a writable location with -o") from exc
    _default_mode(tmp, 0o777)  # mkdtemp makes 0700 folders; outputs get the user's usual permissions
    try:
        write_marker(tmp)  # first, so a model folder's file list (medm2g.json) includes it
        yield tmp
        if overwrite and dest.exists():
            check_replaceable(dest)  # again: it may have changed while the work ran
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=parent))
            os.replace(dest, old / "x")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            _publish(tmp, dest, False)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"could not write '{dest}': {exc.strerror or exc}", "check free disk space and permissions") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
