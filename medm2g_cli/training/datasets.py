"""Manifest-backed torch datasets for training (prepared folders from ``medm2g prepare``/``phantom``).

A prepared folder holds ``dataset.json`` + ``samples.jsonl`` + preprocessed slices (see
:mod:`medm2g_cli.data.manifest`). Training reads several folders at once (``--data A --data B``):
:class:`TrainingData` pools their samples of one split and serves views of them:

* :class:`ImageSet` — images of one modality (optionally one MRI contrast), for autoencoders,
  visual invariance and per-modality diffusion;
* :class:`PairSet` — samples that have both sides of a pair (text-xray, text-ct, ct-mri, t1-t2...),
  for central alignment and cross-guided flows;
* :class:`TextSet` — report texts, for the text VAE.

Items are plain dicts of tensors/strings so the default worker processes of ``DataLoader`` can
load slices in parallel. Images are resized to the model's resolution here (antialiased) so the
model always sees its native grid.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .. import modalities
from ..errors import DataError

TEXT = "text"


@dataclass
class Record:
    """One sample of one prepared folder, reduced to what training needs."""

    root: Path
    id: str
    subject: str
    split: str
    images: dict[str, str] = field(default_factory=dict)  # key (modality or MRI contrast) -> relpath
    text: str | None = None
    dataset: str = ""

    def has(self, key: str) -> bool:
        """Whether the record has ``key`` (``text``, a modality, or an MRI contrast)."""
        if key == TEXT:
            return bool(self.text)
        if key in self.images:
            return True
        if key == "mri":
            return any(k in modalities.MRI_CONTRASTS for k in self.images)
        return False

    def image_key(self, key: str) -> str:
        """The image entry for ``key``; ``mri`` means the first contrast present."""
        if key in self.images:
            return key
        if key == "mri":
            for c in modalities.MRI_CONTRASTS:
                if c in self.images:
                    return c
        raise KeyError(key)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


def _to_record(root: Path, sample: Any, dataset_name: str) -> Record:
    """Normalise one manifest sample (attribute or dict style) into a :class:`Record`."""
    images: dict[str, str] = {}
    files = _get(sample, "files", "images", "paths", default={}) or {}
    for key, rel in dict(files).items():
        k = str(key).lower()
        if k in (TEXT, "report"):
            continue
        if k in modalities.MODALITIES or k in modalities.MRI_CONTRASTS:
            images[k] = str(rel)
    contrast = _get(sample, "contrast", default=None)
    if contrast and "mri" in images and str(contrast).lower() in modalities.MRI_CONTRASTS:
        images[str(contrast).lower()] = images.pop("mri")
    text = _get(sample, "text", "report", "findings", default=None)
    if text is None and isinstance(files, dict):
        text = files.get("text") or files.get("report")
    return Record(
        root=root, id=str(_get(sample, "id", default="")), subject=str(_get(sample, "subject", default="")),
        split=str(_get(sample, "split", default="train")), images=images,
        text=str(text) if text else None, dataset=dataset_name,
    )


def _manifest_api() -> tuple[Any, Any]:
    """``(load_manifest, load_slice)`` of :mod:`medm2g_cli.data.manifest`, else a reader of the same format.

    The fallback reads the documented prepared-folder format directly (``dataset.json``,
    ``samples.jsonl``, 16-bit PNG or ``.npy`` slices scaled to [-1, 1]) so training does not depend
    on the import order of optional modules.
    """
    try:
        from ..data.manifest import load_manifest, load_slice

        return load_manifest, load_slice
    except ImportError:
        return _read_manifest, _read_slice


def _read_manifest(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import json

    root = Path(root)
    info_path, samples_path = root / "dataset.json", root / "samples.jsonl"
    if not info_path.is_file() or not samples_path.is_file():
        raise DataError(f"'{root}' is not a prepared folder (no dataset.json/samples.jsonl)",
                        "make it with medm2g prepare or medm2g phantom")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    samples = []
    for n, line in enumerate(samples_path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                samples.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{samples_path}:{n} is not valid JSON", "re-run medm2g prepare") from exc
    return info, samples


def _read_slice(root: Path, relpath: str) -> Any:
    import numpy as np

    path = Path(root) / relpath
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im).astype(np.float32)
    scale = 65535.0 if arr.max() > 255 or im.mode.startswith("I") else 255.0
    return arr / scale * 2.0 - 1.0


class TrainingData:
    """The pooled samples of one split of one or more prepared folders."""

    def __init__(self, roots: Sequence[str | Path], split: str = "train") -> None:
        load_manifest, _ = _manifest_api()

        if not roots:
            raise DataError("no training data given", "pass --data PREPARED (a folder made by medm2g prepare or phantom)")
        self.roots = [Path(r) for r in roots]
        self.split = split
        self.records: list[Record] = []
        self.names: list[str] = []
        for root in self.roots:
            info, samples = load_manifest(root)
            name = str(_get(info, "name", default=root.name))
            self.names.append(name)
            self.records += [r for r in (_to_record(root, s, name) for s in samples) if r.split == split]

    def available(self) -> set[str]:
        """Keys present in at least one record: ``text``, modalities and MRI contrasts."""
        keys: set[str] = set()
        for r in self.records:
            if r.text:
                keys.add(TEXT)
            for k in r.images:
                keys.add(k)
                if k in modalities.MRI_CONTRASTS:
                    keys.add("mri")
        return keys

    def with_keys(self, *keys: str) -> list[Record]:
        """Records that have every key."""
        return [r for r in self.records if all(r.has(k) for k in keys)]

    def require(self, *keys: str, purpose: str) -> list[Record]:
        """Like :meth:`with_keys` but a missing modality stops the run with one clear line."""
        recs = self.with_keys(*keys)
        if not recs:
            have = ", ".join(sorted(self.available())) or "nothing"
            raise DataError(
                f"{purpose} needs {' + '.join(keys)} samples in the {self.split} split, but the data has only: {have}",
                "add a prepared folder with that modality (--data) or drop it from --stages/--flows",
            )
        return recs


def load_image(record: Record, key: str, size: int) -> torch.Tensor:
    """One slice as a float32 tensor [1, size, size] in [-1, 1]."""
    _, load_slice = _manifest_api()
    rel = record.images[record.image_key(key)]
    try:
        arr = load_slice(record.root, rel)
    except FileNotFoundError as exc:
        raise DataError(f"slice '{rel}' of sample '{record.id}' is missing in {record.root}",
                        "re-run medm2g prepare for that folder") from exc
    t = torch.as_tensor(arr, dtype=torch.float32)
    if t.dim() == 3:  # keep one channel (prepared slices are grey-level)
        t = t[..., 0] if t.shape[-1] in (1, 3, 4) else t[0]
    t = t[None, None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0].clamp(-1, 1)


def _expand(records: list[Record], key: str) -> list[tuple[Record, str]]:
    """(record, concrete key) entries: ``mri`` expands to every contrast a record has, so each
    contrast (t1, t2, pd, ...) is trained, not just the first one."""
    out: list[tuple[Record, str]] = []
    for r in records:
        if key == "mri":
            out += [(r, c) for c in modalities.MRI_CONTRASTS if c in r.images]
        else:
            out.append((r, key))
    return out


class ImageSet(Dataset):
    """Images of one modality or MRI contrast, with the report text when the sample has one."""

    def __init__(self, records: list[Record], key: str, size: int) -> None:
        self.entries, self.size = _expand(records, key), size

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r, k = self.entries[i]
        return {"index": i, "image": load_image(r, k, self.size), "key": k, "text": r.text or ""}


class PairSet(Dataset):
    """Samples holding both sides of a pair; text sides come as strings, images as tensors.

    A generic ``mri`` side expands to one entry per contrast present (see :func:`_expand`).
    """

    def __init__(self, records: list[Record], a: str, b: str, size: int) -> None:
        self.a, self.b, self.size = a, b, size
        if a == "mri":
            self.entries = [(r, k, b) for r, k in _expand(records, a)]
        else:
            self.entries = [(r, a, k) for r, k in _expand(records, b)]

    def __len__(self) -> int:
        return len(self.entries)

    def _side(self, r: Record, key: str) -> Any:
        return r.text if key == TEXT else load_image(r, key, self.size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r, ka, kb = self.entries[i]
        ka = ka if ka == TEXT else r.image_key(ka)
        kb = kb if kb == TEXT else r.image_key(kb)
        return {"index": i, "a": self._side(r, ka), "b": self._side(r, kb), "a_key": ka, "b_key": kb}


class SourcesSet(Dataset):
    """A target with several pixel-aligned image sources (e.g. ``pd`` from ``t1`` + ``t2``).

    ``a`` is the target (text string or image tensor), ``srcs`` the sources stacked [S, 1, H, W]
    in the order given; a generic ``mri`` target expands to every contrast that is not a source.
    """

    def __init__(self, records: list[Record], target: str, sources: Sequence[str], size: int) -> None:
        self.target, self.sources, self.size = target, tuple(sources), size
        self.entries = [(r, k) for r, k in _expand(records, target) if k not in self.sources]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r, kt = self.entries[i]
        kt = kt if kt == TEXT else r.image_key(kt)
        a = r.text if kt == TEXT else load_image(r, kt, self.size)
        srcs = torch.stack([load_image(r, r.image_key(k), self.size) for k in self.sources])
        return {"index": i, "a": a, "a_key": kt, "srcs": srcs, "src_keys": "+".join(r.image_key(k) for k in self.sources)}


class TextSet(Dataset):
    """Report texts (for the text VAE)."""

    def __init__(self, records: list[Record]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "text": self.records[i].text or ""}


class MixedSet(Dataset):
    """Several datasets zipped behind one index: item ``i`` holds item ``i mod len(part)`` of every part.

    A stage that trains several modalities (one autoencoder per modality, one alignment per
    modality, flows) thus sees every part in every step with the same batch size, so the loss of
    step ``s`` is comparable with the loss of step ``s'`` and no modality starves. The length is
    that of the largest part; smaller parts wrap around.
    """

    def __init__(self, parts: dict[str, Dataset]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return max(len(cast(Sized, p)) for p in self.parts.values())

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"parts": {n: p[i % len(cast(Sized, p))] for n, p in self.parts.items()}}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, keep strings as lists; zipped items (:class:`MixedSet`) are collated per part."""
    if items and "parts" in items[0]:
        return {"parts": {n: collate([it["parts"][n] for it in items]) for n in items[0]["parts"]}}
    out: dict[str, Any] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        if isinstance(vals[0], torch.Tensor):
            out[k] = torch.stack(vals)
        elif isinstance(vals[0], int):
            out[k] = torch.tensor(vals)
        else:
            out[k] = vals
    return out
