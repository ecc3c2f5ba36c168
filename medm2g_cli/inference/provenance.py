"""Run reports and output naming.

Every inference run writes a JSON run report next to its outputs (TotalSegmentator's ``-rp``):
package versions, device, weights folder and hash, settings, timings, and every input and output
with its sha256, so a result can be traced to exactly what produced it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_path
from ..io.formats import DICOM_SUFFIXES, PICTURE_SUFFIXES, VOLUME_SUFFIXES


def split_name(path: Path) -> tuple[str, str]:
    """(stem, suffix) with double suffixes such as ``.nii.gz`` kept whole; folders have suffix ''."""
    name = path.name
    for suf in VOLUME_SUFFIXES + PICTURE_SUFFIXES + DICOM_SUFFIXES + (".json", ".txt"):
        if name.lower().endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)], name[-len(suf):]
    return name, ""


def sibling(path: Path, tag: str, suffix: str | None = None) -> Path:
    """``out.nii.gz`` -> ``out_<tag>.nii.gz`` (same format) or with another ``suffix``;
    a folder ``out`` -> ``out_<tag>``."""
    stem, suf = split_name(path)
    return path.with_name(f"{stem}_{tag}{suf if suffix is None else suffix}")


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a folder (every file, in sorted relative-path order, with its name)."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            h.update(bytes.fromhex(sha256_path(f)))
        return h.hexdigest()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe_files(paths: list[Path]) -> list[dict[str, Any]]:
    """``[{"path", "sha256"}]`` for paths that exist."""
    return [{"path": str(p), "sha256": sha256_path(p)} for p in paths if p.exists()]


def withhold_paths(obj: Any, inputs: list[Path]) -> Any:
    """``obj`` (a run report) with every input path replaced by ``<input N>`` (``--anonymize``).

    Clinical exports are often filed under the patient's name or record number
    (``/export/DOE_JANE_4711/t1``), so a de-identified output must not travel with a report that
    names its source. Whole strings equal to an input path (as given or resolved) are replaced, and
    inside longer strings (error messages) the resolved path, a path given with a folder, and a
    quoted file name. The sha256 of each input stays: whoever holds the file can still trace the
    result to it."""
    names: dict[str, str] = {}
    for i, p in enumerate(dict.fromkeys(inputs)):
        tag = f"<input {i + 1}>"
        for form in (str(p), str(Path(p).resolve())):
            names.setdefault(form, tag)
    inner = sorted(((k, v) for k, v in names.items() if "/" in k or "\\" in k), key=lambda kv: -len(kv[0]))
    quoted = {f"'{Path(k).name}'": f"'{v}'" for k, v in names.items()}

    def scrub(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: scrub(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [scrub(v) for v in x]
        if isinstance(x, Path):
            x = str(x)
        if not isinstance(x, str):
            return x
        if x in names:
            return names[x]
        for k, v in [*inner, *quoted.items()]:
            x = x.replace(k, v)
        return x

    return scrub(obj)


def run_report(command: str, *, settings: dict[str, Any], device: str, weights: Path | None,
               weights_sha256: str | None, inputs: list[Path], outputs: list[Path],
               timings: dict[str, Any], extra: dict[str, Any] | None = None,
               withhold: list[Path] | None = None) -> dict[str, Any]:
    """Assemble the run report dictionary; paths in ``withhold`` are replaced (:func:`withhold_paths`)."""
    from .runtime import versions

    rep: dict[str, Any] = {
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {"platform": platform.platform(), "machine": platform.machine()},
        "versions": versions(),
        "device": device,
        "weights": {"path": str(weights) if weights else None, "sha256": weights_sha256},
        "settings": settings,
        "timings": timings,
        "inputs": describe_files(inputs),
        "outputs": describe_files(outputs),
        "synthetic": True,
        "note": "outputs are synthetic and not for clinical use",
    }
    if extra:
        rep.update(extra)
    if withhold:
        rep = withhold_paths(rep, withhold)
        rep["input_paths"] = "withheld (--anonymize)"
    return rep


def write_json(obj: dict[str, Any], path: Path) -> Path:
    """Write JSON atomically (run reports and sidecars are logs of this run, so they are replaced)."""
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_default) + "\n")
    return path


def _default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)
