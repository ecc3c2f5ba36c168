"""Batch inputs of ``translate``: listing the cases, naming their outputs, sharding, and checking
that no two cases (in any shard) write the same file and that no output is an input, before any model work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError, InputError, OutputError
from ..io.formats import DICOM_SUFFIXES, OUTPUT_SUFFIX, VOLUME_SUFFIXES
from ..io.outputs import check_separate
from .provenance import sibling, split_name

T = TypeVar("T")


def _is_volume_file(p: Path) -> bool:
    return p.is_file() and (split_name(p)[1].lower() in VOLUME_SUFFIXES + DICOM_SUFFIXES)


def list_cases(inp: Path) -> list[Path] | None:
    """The cases of a batch input (a folder holding volume files, or a .txt list of paths), sorted;
    None for a single case (a volume file, a DICOM folder or zip)."""
    if not inp.exists():
        raise InputError(f"input '{inp}' does not exist", "check the path")
    if inp.is_file() and inp.suffix.lower() == ".txt":
        try:
            lines = [ln.strip() for ln in inp.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as exc:
            raise InputError(f"list file '{inp}' is not UTF-8 text", "write one path per line as UTF-8") from exc
        paths = [Path(ln) if Path(ln).is_absolute() else (inp.parent / ln) for ln in lines
                 if ln and not ln.startswith("#")]
        if not paths:
            raise InputError(f"list file '{inp}' names no inputs", "put one path per line")
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise InputError(f"list file '{inp}' names missing inputs: {', '.join(missing[:3])}",
                             "fix or remove those lines")
        return paths
    if inp.is_dir():
        entries = sorted(inp.iterdir())
        files = [p for p in entries if _is_volume_file(p) and split_name(p)[1].lower() != ".dcm"]
        if files:
            subdirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
            return sorted(files + subdirs)
    return None


def case_output(inp: Path, out_dir: Path, fmt: str | None) -> Path:
    """Where the case ``inp`` of a batch is written inside ``out_dir`` (``fmt``: a normalised format or None)."""
    stem, suf = split_name(inp)
    if fmt:
        return out_dir / (stem + OUTPUT_SUFFIX[fmt])
    if inp.is_dir() or suf.lower() in DICOM_SUFFIXES:
        return out_dir / stem  # DICOM in, DICOM series folder out
    if suf.lower() == ".mhd":
        return out_dir / (stem + ".mha")
    return out_dir / inp.name


def case_paths(out: Path, samples: int, preview: bool) -> list[Path]:
    """Every file one case writes: the output, its ``_std`` sibling with samples > 1, its preview."""
    return [out] + ([sibling(out, "std")] if samples > 1 else []) + ([sibling(out, "preview", ".png")] if preview else [])


def check_case_outputs(cases: Sequence[tuple[Path, Sequence[Path]]], inputs: Sequence[Path]) -> None:
    """Refuse (one line, before any model work) when two cases would write the same path, or when an
    output is, contains or lies inside an input. ``cases`` holds (input, its output paths) for *all*
    cases, not one shard: shards running side by side must not collide either."""
    owner: dict[Path, Path] = {}
    for inp, paths in cases:
        for p in paths:
            key = Path(os.path.abspath(p)).resolve()
            first = owner.setdefault(key, inp)
            if first != inp:
                raise OutputError(f"the cases '{first}' and '{inp}' would both write '{p}'",
                                  "rename one of them, or translate them in separate runs into separate folders")
    check_separate([p for _, paths in cases for p in paths], inputs)


def shard(cases: Sequence[T], num_parts: int, part_id: int) -> list[T]:
    """Cases of part ``part_id`` of ``num_parts`` (round robin over the sorted list)."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ConfigError(f"--part-id {part_id} is not in 0..{num_parts - 1}",
                          "use --num-parts N with --part-id 0..N-1")
    return list(cases[part_id::num_parts])
