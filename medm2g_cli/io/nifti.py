"""NIfTI-1 read/write with nibabel that never loses geometry.

Reading applies ``scl_slope``/``scl_inter`` (``get_fdata``-equivalent) but keeps integer data integer
when the header has no scaling, so int16 CT round-trips bit-exactly. Writing stores the volume's
affine exactly in **both** the sform and the qform (a bare ``Nifti1Image`` only sets the sform, which
makes qform-only tools disagree), uses an explicit on-disk dtype and never inherits a scaling.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import InputError
from .atomic import atomic_path
from .limits import MAX_DEFLATE_RATIO, check_voxels
from .volume import Volume

# On-disk dtypes we write as-is; anything else (float64, int64, bool ...) is converted explicitly.
_NATIVE = (np.uint8, np.int16, np.uint16, np.int32, np.float32)


def read_nifti(path: str | Path, *, modality: str | None = None, volume_index: int | None = None) -> Volume:
    """Read a ``.nii``/``.nii.gz`` file into a :class:`Volume` with its RAS affine.

    A 4-D file needs ``volume_index`` (which 3-D volume to take); 5-D+ files are refused.
    Corrupt or truncated files raise :class:`InputError`.
    """
    import nibabel as nib

    path = Path(path)
    try:
        # nib.load is typed as the generic FileBasedImage; .nii/.nii.gz files load as Nifti1Image
        # (Nifti2Image is a subclass), whose header/dataobj/affine we use below.
        img = cast(nib.Nifti1Image, nib.load(str(path)))
        hdr = img.header
        check_nifti_size(path, img)
        # Keep integer data integer unless the header scales it (then float32, like get_fdata).
        slope, inter = hdr.get_slope_inter()
        scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
        shape = img.shape
        if len(shape) > 3 and any(s > 1 for s in shape[4:]):
            raise InputError(f"'{path.name}' is {len(shape)}-D {shape}", "only 3-D volumes (or 4-D with --volume N) are supported")
        if len(shape) >= 4 and shape[3] > 1:
            if volume_index is None:
                raise InputError(
                    f"'{path.name}' is 4-D with {shape[3]} volumes {tuple(shape)}",
                    f"pick one with --volume N (0..{shape[3] - 1})",
                )
            if not 0 <= volume_index < shape[3]:
                raise InputError(
                    f"--volume {volume_index} is out of range for '{path.name}' ({shape[3]} volumes)",
                    f"use 0..{shape[3] - 1}",
                )
            proxy: Any = img.dataobj[..., volume_index]  # ArrayProxy slice (ndarray) or the proxy
        else:
            proxy = img.dataobj
        arr = np.asarray(proxy)  # the proxy applies scl_slope/scl_inter; raw dtype when unscaled
        if scaled:
            arr = arr.astype(np.float32)
        while arr.ndim > 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        # Native byte order (big-endian files exist, e.g. nibabel's anatomical.nii).
        if arr.dtype.byteorder not in ("=", "|"):
            arr = arr.astype(arr.dtype.newbyteorder("="))
        arr = np.ascontiguousarray(arr)
        affine = np.asarray(img.affine, dtype=np.float64)
        meta: dict[str, Any] = {
            "format": "nifti",
            "path": str(path),
            "sform_code": int(hdr["sform_code"]),
            "qform_code": int(hdr["qform_code"]),
            "descrip": hdr["descrip"].tobytes().split(b"\x00")[0].decode("latin-1", "replace"),
            "xyzt_units": _xyzt_units(hdr),
        }
        if len(shape) >= 4 and shape[3] > 1:
            meta["volume_index"] = volume_index
            meta["n_volumes"] = int(shape[3])
    except InputError:
        raise
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError,
            nib.spatialimages.HeaderDataError, nib.spatialimages.HeaderTypeError, nib.spatialimages.ImageDataError,
            OverflowError, MemoryError) as exc:
        raise InputError(
            f"cannot read NIfTI '{path.name}': {' '.join(str(exc).split())[:160] or type(exc).__name__}",
            "the file is truncated or corrupt; re-export or re-download it",
        ) from exc
    return Volume(arr, affine, modality, meta)


def _xyzt_units(hdr: Any) -> tuple[str, str]:
    """The header's units; an unknown unit code (seen in damaged files) is reported, not fatal."""
    try:
        return hdr.get_xyzt_units()
    except KeyError:
        return ("unknown", "unknown")


def check_nifti_size(path: Path, img: Any) -> None:
    """Refuse headers that cannot describe this file (empty axes, or more voxel bytes than the file can
    hold): a corrupt or hostile header must not make us allocate terabytes (memory bomb)."""
    shape = tuple(int(s) for s in img.shape)
    if not shape or any(s <= 0 for s in shape):
        raise InputError(f"'{path.name}' has an empty axis (shape {shape})", "the header is corrupt; re-export the file")
    itemsize = img.header.get_data_dtype().itemsize
    need = int(np.prod(np.array(shape, dtype=object))) * itemsize
    size = path.stat().st_size
    compressed = path.name.lower().endswith(".gz")
    have = size * MAX_DEFLATE_RATIO if compressed else size - int(img.header["vox_offset"])
    if need > have:
        raise InputError(
            f"'{path.name}' claims {'x'.join(map(str, shape))} voxels ({need / 2**30:.3g} GiB) but the file is "
            f"only {size} bytes",
            "the header is corrupt or the file is truncated; re-export it",
        )
    # A .gz may legitimately expand ~1000x, which alone would still allow terabytes: an absolute cap too.
    check_voxels(path.name, shape, itemsize)


def _disk_dtype(arr: np.ndarray) -> np.dtype:
    """Explicit on-disk dtype: keep the common medical dtypes, otherwise float32/int16/int32."""
    dt = arr.dtype
    if any(dt == np.dtype(d) for d in _NATIVE):
        return np.dtype(dt)
    if dt == np.bool_ or dt == np.int8:
        return np.dtype(np.uint8) if dt == np.bool_ else np.dtype(np.int16)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        if info.min >= np.iinfo(np.int32).min and info.max <= np.iinfo(np.int32).max:
            return np.dtype(np.int32)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if np.iinfo(np.int32).min <= lo and hi <= np.iinfo(np.int32).max:
            return np.dtype(np.int32)
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def write_nifti(
    vol: Volume,
    path: str | Path,
    *,
    overwrite: bool = False,
    description: str | None = None,
    dtype: Any = None,
    source_meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``vol`` as NIfTI-1 atomically: exact affine in sform and qform, explicit dtype, no scaling.

    The sform/qform codes of the source are kept when ``source_meta`` (or ``vol.meta``) carries them
    (and are non-zero); otherwise code 1 (scanner) is used for both. ``description`` goes into the
    80-byte ``descrip`` field (provenance).
    """
    import nibabel as nib

    path = Path(path)
    arr = np.asarray(vol.array)
    out_dtype = np.dtype(dtype) if dtype is not None else _disk_dtype(arr)
    data = arr.astype(out_dtype, copy=False)
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(out_dtype)
    img = nib.Nifti1Image(data, vol.affine, header=hdr)
    meta = {**vol.meta, **(source_meta or {})}
    scode = int(meta.get("sform_code") or 1) if meta.get("format", "nifti") == "nifti" else 1
    qcode = int(meta.get("qform_code") or 1) if meta.get("format", "nifti") == "nifti" else 1
    img.set_sform(vol.affine, code=scode)
    img.set_qform(vol.affine, code=qcode)
    # Never let nibabel pick a quantising scl_slope/scl_inter (float data under a uint8 header comes back quantised).
    img.header.set_slope_inter(1.0, 0.0)
    img.header.set_xyzt_units("mm", "sec")
    if description:
        img.header["descrip"] = description.encode("latin-1", "replace")[:79]
    with atomic_path(path, overwrite=overwrite) as tmp:
        nib.save(img, str(tmp))
    return path
