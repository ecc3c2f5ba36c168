"""DICOM series read and derived-series write with pydicom.

Reading: files are grouped by SeriesInstanceUID; a folder with several series needs ``series``.
Localizers (ImageType LOCALIZER, or an orientation that differs from the rest) are skipped. Slices
are sorted by ImagePositionPatient projected on the slice normal — never by file name — and the
slice step is checked: uneven spacing or a gantry tilt raise :class:`GeometryError` naming the
override (``allow_irregular`` / ``--allow-irregular``). RescaleSlope/Intercept are applied. The LPS
patient geometry is converted to a RAS affine (negate x and y).

Writing derived synthetic series lives in :mod:`.dicom_write` (CT/MR Image, pydicom) and
:mod:`.dicom_objects` (Parametric Map, Secondary Capture, SR, highdicom). The reader records the
source's SOP Class/Instance UIDs per slice (``meta["source_instances"]``) so outputs can reference them.
"""

from __future__ import annotations

import contextlib
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DicomSeriesError, GeometryError, InputError
from .limits import check_dicom, check_zip, extract_member
from .volume import Volume

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

# Patient and study modules carried from a source series into a derived one.
PATIENT_STUDY_KEYS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription",
)
_SERIES_KEYS: tuple[str, ...] = (
    "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality", "FrameOfReferenceUID",
    "BodyPartExamined", "PatientPosition",
)
# Every header element the reader uses: the scan parses only these (the rest of a header can be
# large and is never looked at), which makes scanning a series several times faster.
HEADER_TAGS: tuple[str, ...] = PATIENT_STUDY_KEYS + _SERIES_KEYS + (
    "Rows", "Columns", "ImageType", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing",
    "ImagerPixelSpacing", "SliceThickness", "SpacingBetweenSlices", "NumberOfFrames", "InstanceNumber",
    "RescaleSlope", "RescaleIntercept", "PhotometricInterpretation", "WindowCenter", "WindowWidth",
    "PerFrameFunctionalGroupsSequence", "SOPClassUID", "SOPInstanceUID", "BitsAllocated", "PixelRepresentation",
    "SamplesPerPixel", "EchoTime", "RepetitionTime", "InversionTime", "SeriesTime", "AcquisitionNumber",
)
# What the scan reads from every file: grouping, ordering, localizers and rescale. Each series'
# first file is then read with HEADER_TAGS (descriptions, spacing, patient/study modules).
SCAN_TAGS: tuple[str, ...] = (
    "SeriesInstanceUID", "Rows", "NumberOfFrames", "ImagePositionPatient", "ImageOrientationPatient",
    "InstanceNumber", "ImageType", "RescaleSlope", "RescaleIntercept", "PerFrameFunctionalGroupsSequence",
    "SOPClassUID", "SOPInstanceUID",
)

# Relative tolerance on slice-step deviation (dicom2nifti uses a similar few-percent rule).
SPACING_RTOL = 0.05
# Maximum angle (degrees) between the slice step and the slice normal before we call it a tilt.
TILT_DEG = 0.5


@dataclass
class SeriesInfo:
    """One series found in a DICOM folder."""

    uid: str
    description: str
    number: int | None
    modality: str
    n_files: int
    files: list[Path]
    # headers read during the scan, reused by the reader (each file's header is parsed once)
    headers: list[Any] = field(default_factory=list, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no file list)."""
        return {"uid": self.uid, "description": self.description, "number": self.number,
                "modality": self.modality, "n_slices": self.n_files}


# -- discovery -----------------------------------------------------------------------------------


@contextlib.contextmanager
def dicom_source(path: str | Path) -> Iterator[Path]:
    """Yield a folder or file to scan: a zip is extracted into a private temporary folder first
    (checked against :mod:`.limits` before anything is extracted; always removed afterwards)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise InputError(f"'{path.name}' is not a valid zip file", "re-create the zip of the DICOM series") from exc
        with zf, tempfile.TemporaryDirectory(prefix="medm2g-zip-") as tmp:  # mkdtemp: private (0700)
            root = Path(tmp).resolve()
            members = [m for m in zf.infolist() if not m.is_dir()]
            check_zip(path.name, members)  # count, total size and ratio, before extracting anything
            for i, info in enumerate(members):
                # Never trust member names (zip-slip): flatten to an index-based name.
                dest = root / f"{i:06d}_{Path(info.filename).name[:100]}"
                extract_member(zf, info, dest, path.name)  # bounded by the size check_zip accepted
            yield root
    else:
        yield path


def _candidate_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name.upper() != "DICOMDIR")


def _read_header(p: Path, tags: tuple[str, ...] | None = None) -> Any | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(p), stop_before_pixels=True, specific_tags=list(tags or HEADER_TAGS))
        for _ in ds:  # pydicom parses elements lazily: a damaged element must fail here, not later
            pass
        return ds
    except (InvalidDicomError, OSError, EOFError):
        return None
    except Exception:  # noqa: BLE001 - pydicom raises many types (BytesLengthException ...) for damaged headers
        return None


def scan_series(path: str | Path) -> list[SeriesInfo]:
    """Group the DICOM image files under ``path`` (folder or single file) by SeriesInstanceUID."""
    path = Path(path)
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for f in _candidate_files(path):
        ds = _read_header(f, SCAN_TAGS)  # per-file essentials only; the first file's full header below
        if ds is None or "SeriesInstanceUID" not in ds:
            continue
        if "Rows" not in ds and "PerFrameFunctionalGroupsSequence" not in ds:
            continue  # not an image (SR, RT plan, DICOMDIR ...)
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((f, ds))
    out = []
    for uid, items in groups.items():
        ds0 = _read_header(items[0][0]) or items[0][1]
        number = ds0.get("SeriesNumber")
        out.append(SeriesInfo(uid, str(ds0.get("SeriesDescription", "") or ""),
                              int(number) if number not in (None, "") else None,
                              str(ds0.get("Modality", "") or ""), len(items), [f for f, _ in items],
                              [ds for _, ds in items]))
    out.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    return out


def list_dicom_series(folder: str | Path) -> list[dict[str, Any]]:
    """List the series in a DICOM folder (or zip): uid, description, number, modality, n_slices."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"input '{folder}' does not exist", "check the path")
    with dicom_source(folder) as src:
        return [s.as_dict() for s in scan_series(src)]


def _describe(series: list[SeriesInfo]) -> str:
    return "; ".join(f"{s.uid} ('{s.description or '-'}', {s.modality or '?'}, {s.n_files} slices)" for s in series)


def _select(series: list[SeriesInfo], wanted: str | None, where: Path) -> SeriesInfo:
    if not series:
        raise DicomSeriesError(f"no DICOM images found in '{where}'",
                               "pass a folder (or .zip) holding one DICOM series, or a .dcm file")
    if wanted is None:
        if len(series) == 1:
            return series[0]
        raise DicomSeriesError(f"'{where.name}' holds {len(series)} series: {_describe(series)}",
                               "choose one with --series UID (run `medm2g info` to list them)")
    exact = [s for s in series if s.uid == wanted or (s.number is not None and str(s.number) == wanted)]
    if len(exact) == 1:
        return exact[0]
    prefix = [s for s in series if s.uid.startswith(wanted)]
    if len(prefix) == 1:
        return prefix[0]
    raise DicomSeriesError(f"--series '{wanted}' matches {len(exact) or len(prefix)} of the series in '{where.name}': "
                           f"{_describe(series)}", "pass a full SeriesInstanceUID from that list")


# -- reading -------------------------------------------------------------------------------------


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n else None


def _pixel_spacing(ds: Any) -> tuple[float, float]:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        sp = _floats(ds.get(key), 2) if ds.get(key) is not None else None
        if sp is not None and np.all(sp > 0):
            return float(sp[0]), float(sp[1])
    return 1.0, 1.0


def _is_localizer(ds: Any) -> bool:
    return any("LOCALIZER" in str(v).upper() for v in (ds.get("ImageType") or []))


def _pixels(path: Path) -> tuple[Any, np.ndarray]:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for corrupt files
        raise InputError(f"cannot read DICOM '{path.name}': {' '.join(str(exc).split())[:140]}",
                         "the file is corrupt or truncated; re-export the series") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(f"DICOM '{path.name}' has no pixel data", "export the series with its images, not only headers")
    check_dicom(path.name, ds)  # before the decoder allocates
    try:
        px = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing decoder plugins raise RuntimeError/NotImplementedError
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(ts, "name", str(ts))
        raise InputError(f"cannot decode pixel data of '{path.name}' (transfer syntax {name}): "
                         f"{' '.join(str(exc).split())[:120]}",
                         "install a decoder (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg) "
                         "or export the series uncompressed") from exc
    if px.ndim == 3 and str(ds.get("PhotometricInterpretation", "")).startswith(("RGB", "YBR")):
        raise InputError(f"DICOM '{path.name}' is a colour image ({ds.PhotometricInterpretation})",
                         "medm2g reads greyscale CT, MR and X-ray images")
    return ds, px


def _read_pixels_itk(files: list[Path], ds0: Any, integral: bool) -> np.ndarray | None:
    """Pixel data of sorted single-frame greyscale files through SimpleITK (GDCM, C++), rescaled.

    About 3-5x faster than decoding each file with pydicom. Geometry still comes from our own
    header parsing above (sorted by position, never by name); only the voxel values are taken from
    SimpleITK. Returns None (the caller falls back to pydicom) for anything unusual: colour,
    MONOCHROME1, mixed sizes, a decoder GDCM lacks, or any error.
    """
    if str(ds0.get("PhotometricInterpretation", "")) not in ("MONOCHROME2", ""):
        return None
    try:
        import SimpleITK as sitk  # noqa: N813

        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in files])
        img = reader.Execute()
        if img.GetNumberOfComponentsPerPixel() != 1:
            return None
        arr = sitk.GetArrayFromImage(img)  # (slice, row, col)
    except Exception:  # noqa: BLE001 - any GDCM trouble: the pydicom path gives the precise error
        return None
    if arr.ndim != 3 or arr.shape[0] != len(files) or arr.shape[1:] != (int(ds0.Rows), int(ds0.Columns)):
        return None
    # -> (column, row, slice) as the pydicom path; a Fortran-ordered view, no copy
    arr = np.transpose(arr, (2, 1, 0))
    if not integral:  # a real-valued rescale: float32, as the pydicom path gives
        return arr.astype(np.float32, copy=False)
    if arr.dtype.kind == "f":
        if not (np.all(np.isfinite(arr)) and np.array_equal(arr, np.round(arr))):
            return None
        arr = arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if -32768 <= lo and hi <= 32767:
            return arr.astype(np.int16, copy=False)
        if 0 <= lo and hi <= 65535:
            return arr.astype(np.uint16, copy=False)
        return arr.astype(np.int32, copy=False)
    return None


def _rescale(raw: np.ndarray, slopes: list[float], inters: list[float]) -> np.ndarray:
    """Apply RescaleSlope/Intercept per slice; keep integers integer when exact."""
    s_arr, i_arr = np.array(slopes), np.array(inters)
    if np.all(s_arr == 1.0) and np.all(i_arr == np.round(i_arr)):
        out = raw.astype(np.int32) + i_arr.astype(np.int32)[None, None, :]
        lo, hi = (int(out.min()), int(out.max())) if out.size else (0, 0)
        if -32768 <= lo and hi <= 32767:
            return out.astype(np.int16)
        if 0 <= lo and hi <= 65535:
            return out.astype(np.uint16)
        return out
    return (raw.astype(np.float64) * s_arr[None, None, :] + i_arr[None, None, :]).astype(np.float32)


def read_dicom(
    path: str | Path,
    *,
    modality: str | None = None,
    series: str | None = None,
    allow_irregular: bool = False,
) -> Volume:
    """Read one DICOM series (folder, zip or single file) into a :class:`Volume` with a RAS affine."""
    import struct

    try:
        return _read_dicom(Path(path), modality, series, allow_irregular)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, NotImplementedError, OverflowError,
            ZeroDivisionError, struct.error) as exc:
        # Malformed values in a header (a DS that is not a number, a sequence cut short ...) surface
        # only when used; they are the file's fault, so say so in one line.
        raise InputError(f"cannot read DICOM series in '{Path(path).name}': a header value is malformed "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})",
                         "the files are corrupt; re-export the series") from exc


def _read_dicom(path: Path, modality: str | None, series: str | None, allow_irregular: bool) -> Volume:
    from ..modalities import from_dicom

    with dicom_source(path) as src:
        found = scan_series(src)
        chosen = _select(found, series, path)
        headers = list(zip(chosen.files, chosen.headers, strict=True))
        notes: list[str] = []
        # Localizers and odd orientations are not part of the volume.
        kept = [(f, ds) for f, ds in headers if not _is_localizer(ds)]
        if len(kept) < len(headers):
            notes.append(f"skipped {len(headers) - len(kept)} localizer image(s)")
        if not kept:
            raise DicomSeriesError(f"series {chosen.uid} in '{path.name}' holds only localizers",
                                   "choose another series with --series")
        iops = [_floats(ds.get("ImageOrientationPatient") or [], 6) for _, ds in kept]
        if all(v is not None for v in iops):
            keys = [tuple(np.round(v, 4)) for v in iops]  # type: ignore[arg-type]
            common = max(set(keys), key=keys.count)
            odd = [i for i, k in enumerate(keys) if k != common]
            if odd:
                if len(odd) * 2 >= len(keys):
                    raise GeometryError(f"series {chosen.uid} mixes {len(set(keys))} slice orientations",
                                        "split the series or choose another with --series")
                notes.append(f"skipped {len(odd)} image(s) with a different orientation (localizers)")
                kept = [kv for i, kv in enumerate(kept) if i not in set(odd)]
                iops = [v for i, v in enumerate(iops) if i not in set(odd)]
            iop = np.asarray(iops[0], dtype=np.float64)
        else:
            iop = None
        ds0 = _read_header(kept[0][0]) or kept[0][1]  # the scan kept only per-slice tags
        frames = int(ds0.get("NumberOfFrames", 1) or 1)
        check_dicom(path.name, ds0, len(kept))  # the whole series, before any decoding
        row_sp, col_sp = _pixel_spacing(ds0)
        if iop is None:
            iop = np.array([1.0, 0, 0, 0, 1.0, 0])
            notes.append("no ImageOrientationPatient: assumed axial, unit direction")
        r = iop[:3] / np.linalg.norm(iop[:3])
        c = iop[3:] / np.linalg.norm(iop[3:])
        n = np.cross(r, c)
        ipps = [_floats(ds.get("ImagePositionPatient") or [], 3) for _, ds in kept]
        has_pos = all(p is not None for p in ipps)
        thickness = float(ds0.get("SpacingBetweenSlices") or ds0.get("SliceThickness") or 1.0) or 1.0

        if has_pos and len(kept) > 1:
            pos = np.array(ipps, dtype=np.float64)
            proj = pos @ n
            order = np.argsort(proj, kind="stable")
            # Direction along the normal is a convention; follow InstanceNumber when it is monotonic
            # so a series written by medm2g (InstanceNumber ascending with k) reads back identically.
            inst = [kept[i][1].get("InstanceNumber") for i in order]
            if all(v is not None for v in inst):
                iv = np.array([int(v) for v in inst])
                if np.all(np.diff(iv) < 0):
                    order = order[::-1]
            pos, proj = pos[order], proj[order]
            kept = [kept[i] for i in order]
            steps = np.diff(proj)
            if np.any(np.abs(steps) < 1e-4):
                raise GeometryError(
                    f"series {chosen.uid} has {int(np.sum(np.abs(steps) < 1e-4)) + 1} images at the same position "
                    "(several echoes, phases or time points)",
                    "split the series by echo/phase before converting")
            mean = float(np.mean(steps))
            if not allow_irregular and np.max(np.abs(steps - mean)) > SPACING_RTOL * abs(mean):
                raise GeometryError(
                    f"series {chosen.uid} has uneven slice spacing ({abs(steps).min():.3f}-{abs(steps).max():.3f} mm; "
                    "missing slices?)",
                    "pass --allow-irregular to stack it anyway with the mean spacing")
            step = (pos[-1] - pos[0]) / (len(pos) - 1)
            cosang = abs(float(step @ n)) / float(np.linalg.norm(step))
            if not allow_irregular and np.degrees(np.arccos(min(1.0, cosang))) > TILT_DEG:
                raise GeometryError(
                    f"series {chosen.uid} is gantry-tilted ({np.degrees(np.arccos(min(1.0, cosang))):.1f} degrees)",
                    "pass --allow-irregular to keep the tilt as a sheared affine (NIfTI sform only)")
            origin = pos[0]
        else:
            if len(kept) > 1:
                inst = [ds.get("InstanceNumber") for _, ds in kept]
                if all(v is not None for v in inst):
                    kept = [kept[i] for i in np.argsort([int(v) for v in inst], kind="stable")]
                notes.append("no ImagePositionPatient: slices stacked by InstanceNumber")
            origin = ipps[0] if ipps and ipps[0] is not None else np.zeros(3)
            step = n * thickness

        slices, slopes, inters = [], [], []
        ds_px = None
        resc = [(float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)) for _, ds in kept]
        integral = all(sl == 1.0 and it == round(it) for sl, it in resc)
        fast = _read_pixels_itk([f for f, _ in kept], ds0, integral) if frames == 1 else None
        for f, _ in ([] if fast is not None else kept):
            ds_px, px = _pixels(f)
            slope = float(ds_px.get("RescaleSlope", 1) or 1)
            inter = float(ds_px.get("RescaleIntercept", 0) or 0)
            planes = px if (frames > 1 and px.ndim == 3) else px[None]
            for plane in planes:
                slices.append(np.asarray(plane).T)  # (rows, cols) -> (i=column, j=row)
                slopes.append(slope)
                inters.append(inter)
        if frames > 1:
            notes.append("multi-frame image: frames stacked with SliceThickness spacing")
        if fast is not None:
            arr = fast
        else:
            raw = np.stack(slices, axis=-1)
            arr = _rescale(raw, slopes, inters)
        if str(ds0.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            notes.append("MONOCHROME1: values kept as stored (bright = low attenuation)")

    lps = np.eye(4)
    lps[:3, 0] = r * col_sp
    lps[:3, 1] = c * row_sp
    lps[:3, 2] = step
    lps[:3, 3] = origin
    affine = LPS @ lps
    dicom_mod = str(ds0.get("Modality", "") or "")
    meta: dict[str, Any] = {
        "format": "dicom",
        "path": str(path),
        "n_series": len(found),
        "dicom_modality": dicom_mod,
        "notes": notes,
        "affine": affine.tolist(),
        "shape": list(arr.shape),
        # per slice, in volume order: what a derived output references (SourceImageSequence ...)
        "source_instances": [[str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))]
                             for _, ds in kept if ds.get("SOPInstanceUID")],
        "NumberOfFrames": frames,
    }
    for key in PATIENT_STUDY_KEYS + _SERIES_KEYS:
        if key in ds0 and ds0.get(key) not in (None, ""):
            meta[key] = str(ds0.get(key))
    for key in ("WindowCenter", "WindowWidth"):
        if ds0.get(key) is not None:
            v = ds0.get(key)
            meta[key] = float(v[0] if hasattr(v, "__len__") and not isinstance(v, str) else v)
    if ds_px is not None and getattr(ds_px, "file_meta", None) is not None:
        meta["TransferSyntaxUID"] = str(ds_px.file_meta.get("TransferSyntaxUID", ""))
    return Volume(arr, affine, modality or from_dicom(dicom_mod), meta)
