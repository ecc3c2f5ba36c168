"""The rules for where medm2g may write and what ``--overwrite`` may replace, defined once.

- :func:`safe_component`: a name that comes from data (a DICOM PatientID, a CSV column, a folder
  name) becomes one safe path component; when it had to be changed, a short hash of the original
  is appended, so "P 1" and "P_1" never share a file.
- :func:`check_separate`: an output may not be, contain or lie inside any input (``prepare SRC
  -o PARENT_OF_SRC --overwrite`` would delete the source).
- :data:`MARKER`: every folder medm2g creates carries this file; :func:`check_replaceable` lets
  ``--overwrite`` replace an existing folder only when it carries it (or is empty).
- :func:`publish`: moves a finished temporary into place *without* replacing anything that
  appeared meanwhile (``renameat2(RENAME_NOREPLACE)``, else a hard link), so two processes writing
  one output cannot both succeed.
- :func:`folder_lock`: an exclusive ``flock`` on a folder's marker, so two runs cannot write one
  prepared folder at the same time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import OutputError

MARKER = ".medm2g"
# Constant content: prepared folders must be byte-identical across runs.
MARKER_TEXT = "This folder was written by medm2g; `--overwrite` may replace it.\n"
_SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
MAX_COMPONENT = 80


# -- names from data -------------------------------------------------------------------------------


def safe_component(name: object, max_len: int = MAX_COMPONENT) -> str:
    """``name`` as one safe path component: ASCII letters, digits, ``-``, ``_`` and ``.``, not hidden.

    A name that is already safe is kept as it is; any other gets its unsafe characters replaced
    and ``-`` plus 8 hex digits of the original's sha256 appended (``../../x`` -> ``_.._x-<hash>``,
    ``P 1`` -> ``P_1-<hash>``), so distinct names stay distinct.
    """
    text = str(name)
    clean = "".join(c if c in _SAFE_CHARS else "_" for c in text)
    if clean.startswith("."):  # no ".", "..", or hidden names
        clean = "_" + clean[1:]
    if clean == text and 0 < len(clean) <= max_len:
        return clean
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{clean[:max_len] or '_'}-{digest}"


# -- outputs versus inputs ---------------------------------------------------------------------------


def _resolved(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(p)).resolve()


def check_separate(outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse (:class:`OutputError`) when an output equals, contains or lies inside an input.

    Symlinks are resolved first, so a link to the input counts as the input.
    """
    ins = [(Path(i), _resolved(i)) for i in inputs]
    for o in outputs:
        ro = _resolved(o)
        for i, ri in ins:
            if ro == ri:
                how = "is the input"
            elif ri in ro.parents:
                how = "lies inside the input"
            elif ro in ri.parents:
                how = "contains the input"
            else:
                continue
            raise OutputError(f"the output '{o}' {how} '{i}'", "choose an -o outside the inputs; medm2g never writes over its inputs")


# -- marker and --overwrite --------------------------------------------------------------------------


def write_marker(folder: str | os.PathLike[str]) -> None:
    """Mark ``folder`` as a medm2g output (idempotent; never follows a planted symlink)."""
    try:
        fd = os.open(Path(folder) / MARKER, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:  # a planted symlink (ELOOP), a read-only folder
        raise OutputError(f"cannot write '{Path(folder) / MARKER}': {exc.strerror or exc}",
                          "choose a writable -o that medm2g may use") from exc
    try:
        if os.fstat(fd).st_size != len(MARKER_TEXT):
            os.ftruncate(fd, 0)
            os.write(fd, MARKER_TEXT.encode())
    finally:
        os.close(fd)


def is_ours(folder: str | os.PathLike[str]) -> bool:
    """True for a folder that carries medm2g's marker (a regular file) or is empty."""
    f = Path(folder)
    m = f / MARKER
    if m.is_file() and not m.is_symlink():
        return True
    try:
        return not any(os.scandir(f))
    except OSError:
        return False


def check_replaceable(dest: str | os.PathLike[str]) -> None:
    """``--overwrite`` may replace files and medm2g's own folders; refuse any other existing folder."""
    d = Path(dest)
    if d.is_dir() and not d.is_symlink() and not is_ours(d):
        raise OutputError(f"'{d}' is a folder medm2g did not write (it has no {MARKER} file), so --overwrite will not replace it",
                          "remove it yourself or choose another -o")


# -- no-replace publishing -----------------------------------------------------------------------------

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2(src: str, dst: str) -> bool:
    """``renameat2(..., RENAME_NOREPLACE)``; False when the system or file system lacks it."""
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), dst)


def publish(tmp: str | os.PathLike[str], dest: str | os.PathLike[str], *, replace: bool) -> None:
    """Move the finished ``tmp`` to ``dest``; unless ``replace``, fail with :class:`FileExistsError`
    when ``dest`` exists at that moment (atomically: no check-then-rename window)."""
    src, dst = os.fspath(tmp), os.fspath(dest)
    if replace:
        os.replace(src, dst)
        return
    if _renameat2(src, dst):
        return
    if not os.path.isdir(src):
        try:
            os.link(src, dst)  # fails if dst exists, atomically
        except FileExistsError:
            raise
        except OSError:  # no hard links here (some network/FUSE file systems): best effort below
            pass
        else:
            os.unlink(src)
            return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "File exists", dst)
    os.rename(src, dst)  # for a folder, rename refuses a non-empty destination by itself


# -- locking -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "run") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (its marker file) or refuse at once with one line."""
    write_marker(folder)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    fd = os.open(Path(folder) / MARKER, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise OutputError(f"another medm2g {what} is writing '{folder}'",
                              "wait for it to finish or choose another -o") from exc
        yield
    finally:
        os.close(fd)
