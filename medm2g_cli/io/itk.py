"""MetaImage (.mha/.mhd) and NRRD via SimpleITK, plus Volume <-> SimpleITK.Image conversion.

ITK stores origin/direction in LPS; a :class:`Volume` affine is RAS, so x and y are negated on the
way in and out. ITK arrays are (z, y, x) from ``GetArrayFromImage``; Volume arrays are (i, j, k),
hence the transposes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OutputExistsError
from .atomic import atomic_path
from .formats import DETACHED_HEADER_SUFFIXES, VOLUME_FORMATS, suffix_of
from .outputs import publish
from .volume import Volume

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def volume_to_sitk(vol: Volume, dtype: Any = None) -> Any:
    """A SimpleITK image with the volume's geometry (2-D arrays become one-slice 3-D images)."""
    import SimpleITK as sitk  # noqa: N813

    arr = np.asarray(vol.array)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if dtype is not None:
        arr = arr.astype(dtype)
    elif arr.dtype == np.float64 or arr.dtype == np.bool_:
        arr = arr.astype(np.float32 if arr.dtype == np.float64 else np.uint8)
    lps = LPS @ vol.affine
    sp = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    sp = np.where(sp == 0, 1.0, sp)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing([float(s) for s in sp])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    img.SetDirection([float(v) for v in (lps[:3, :3] / sp[None, :]).ravel()])
    return img


def sitk_to_volume(img: Any, modality: str | None = None, meta: dict[str, Any] | None = None) -> Volume:
    """A :class:`Volume` (RAS affine) from a 2-D or 3-D SimpleITK image."""
    import SimpleITK as sitk  # noqa: N813

    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"image has {img.GetNumberOfComponentsPerPixel()} components per pixel",
                         "medm2g reads scalar (greyscale) images")
    dim = img.GetDimension()
    if dim not in (2, 3):
        raise InputError(f"image is {dim}-D", "convert it to a 3-D volume first")
    arr = sitk.GetArrayFromImage(img)
    if dim == 2:
        arr = arr[None]
    arr = np.ascontiguousarray(arr.transpose(2, 1, 0))
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(dim, dim)
    spacing = np.array(img.GetSpacing(), dtype=np.float64)
    origin = np.array(img.GetOrigin(), dtype=np.float64)
    lps = np.eye(4)
    lps[:dim, :dim] = direction * spacing[None, :]
    lps[:dim, 3] = origin
    return Volume(arr, LPS @ lps, modality, dict(meta or {}))


def read_itk(path: str | Path, *, modality: str | None = None) -> Volume:
    """Read .mha/.mhd/.nrrd/.nhdr with SimpleITK.

    The header is checked before ITK allocates anything: its data file must be the file itself or a
    file next to it (never a path elsewhere on the machine), and the declared size must fit both
    that data and the limits of :mod:`.limits`.
    """
    import SimpleITK as sitk  # noqa: N813

    from .itk_header import check_itk_header

    path = Path(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        # Force the reader the suffix names: ITK would otherwise pick one by content, so a ".nrrd"
        # holding a MetaImage header would escape the NRRD checks.
        reader.SetImageIO("NrrdImageIO" if VOLUME_FORMATS.get(suffix_of(path)) == "nrrd" else "MetaImageIO")
        check_itk_header(path, reader)
        img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"cannot read '{path.name}': {' '.join(str(exc).split())[-160:]}",
                         "the file is corrupt or its data file is missing") from exc
    return sitk_to_volume(img, modality, {"format": "itk", "path": str(path)})


def write_itk(vol: Volume, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write .mha/.mhd/.nrrd/.nhdr atomically (compressed; a .mhd/.nhdr writes its data file next to it)."""
    import SimpleITK as sitk  # noqa: N813

    path = Path(path)
    img = volume_to_sitk(vol)
    if suffix_of(path) in DETACHED_HEADER_SUFFIXES:
        # Header + data file: write both in a temporary folder, move the data file first and the
        # header last, so a visible header always has its complete data next to it (and names it
        # by its final name, not a temporary one).
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
        try:
            sitk.WriteImage(img, str(tmp / path.name), True)
            data_files = [f for f in tmp.iterdir() if f.name != path.name]
            for f in data_files:
                if (path.parent / f.name).exists() and not overwrite:
                    raise OutputExistsError(f"output '{path.parent / f.name}' already exists",
                                            "pass --overwrite to replace it")
            try:  # no-replace unless --overwrite: another process may have finished the same output meanwhile
                for f in data_files:
                    publish(f, path.parent / f.name, replace=overwrite)
                publish(tmp / path.name, path, replace=overwrite)
            except FileExistsError as exc:
                raise OutputExistsError(f"output '{path}' already exists", "pass --overwrite to replace it") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path
    with atomic_path(path, overwrite=overwrite) as tmp:
        sitk.WriteImage(img, str(tmp), True)
    return path
