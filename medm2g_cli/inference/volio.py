"""Volume reading and writing for the inference commands.

The package's I/O layer (:mod:`medm2g_cli.io`: ``read_volume``/``write_volume``) is used when it
is installed. This module carries a compact implementation of the same contract for the formats
inference needs (NIfTI, DICOM series folder/zip/file, MHA/NRRD), so the inference commands work and
are tested on their own: geometry is exact (RAS affine in, the same affine out; NIfTI sform and
qform both set; DICOM positions from the affine in LPS) and DICOM outputs are derived synthetic
series.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np

from .. import __version__, modalities
from ..errors import DicomSeriesError, FormatError, InputError
from ..io.atomic import atomic_dir, atomic_path, check_output
from ..io.volume import Volume

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID",
                  "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                  "StudyDescription", "FrameOfReferenceUID", "Modality", "SeriesInstanceUID", "SeriesDescription")


def _package_io() -> Any:
    """The package I/O module if it provides the read/write contract, else None."""
    try:
        from .. import io as pkg_io
    except ImportError:  # pragma: no cover - io/__init__ always importable in a complete install
        return None
    if hasattr(pkg_io, "read_volume") and hasattr(pkg_io, "write_volume"):
        return pkg_io
    return None


def read_volume(path: Path, modality: str | None = None, series: str | None = None) -> Volume:
    """Read a volume (NIfTI, DICOM folder/zip/file, MHA/MHD/NRRD) with its RAS affine."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input '{path}' does not exist", "check the path")
    pkg = _package_io()
    if pkg is not None:
        return pkg.read_volume(path, modality=modality, series=series)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _read_nifti(path, modality)
    if name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
        return _read_itk(path, modality)
    if name.endswith((".png", ".jpg", ".jpeg")):
        return _read_picture(path, modality)
    if path.is_dir() or name.endswith((".zip", ".dcm")):
        return _read_dicom(path, modality, series)
    raise FormatError(f"cannot read '{path.name}': unknown format",
                      "use .nii/.nii.gz, .mha/.mhd/.nrrd, a DICOM folder, .zip or .dcm")


def write_volume(vol: Volume, path: Path, *, format: str, overwrite: bool = False,  # noqa: A002 - io contract
                 source_meta: dict[str, Any] | None = None, description: str = "", anonymize: bool = False) -> Path:
    """Write ``vol`` on its grid (nifti | dicom | mha | nrrd), atomically and never over an
    existing output unless ``overwrite``."""
    pkg = _package_io()
    if pkg is not None:
        pkg.write_volume(vol, path, format=format, overwrite=overwrite, source_meta=source_meta,
                         description=description, anonymize=anonymize)
        return Path(path)
    check_output(path, overwrite)
    if format == "nifti":
        return _write_nifti(vol, Path(path), source_meta or {}, description)
    if format in ("mha", "nrrd"):
        return _write_itk(vol, Path(path))
    if format == "dicom":
        return _write_dicom(vol, Path(path), source_meta or {}, description, overwrite)
    raise FormatError(f"cannot write format '{format}'", "use nifti, dicom, mha or nrrd")


# -- NIfTI --------------------------------------------------------------------------------------------


def _read_nifti(path: Path, modality: str | None) -> Volume:
    import nibabel as nib

    try:
        # nib.load is typed as the generic FileBasedImage; .nii/.nii.gz files load as Nifti1Image.
        img = cast(nib.Nifti1Image, nib.load(str(path)))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # noqa: BLE001 - nibabel/gzip/zlib raise many types for damaged files
        raise InputError(f"cannot read NIfTI '{path.name}': {' '.join(str(exc).split())[:160]}",
                         "the file is damaged or truncated; re-export it") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"'{path.name}' has shape {data.shape}, not a 3-D volume",
                         "extract one 3-D volume first (e.g. `medm2g convert --volume N`)")
    hdr = img.header
    meta = {"format": "nifti", "path": str(path), "sform_code": int(hdr["sform_code"]),
            "qform_code": int(hdr["qform_code"])}
    return Volume(data, img.affine, modality, meta)


def _write_nifti(vol: Volume, path: Path, source_meta: dict[str, Any], description: str) -> Path:
    import nibabel as nib

    arr = np.asarray(vol.array)
    dtype = np.int16 if vol.modality == "ct" and "std" not in description.lower() else np.float32
    if dtype is np.int16:
        arr = np.clip(np.rint(arr), -32768, 32767)
    img = nib.Nifti1Image(arr.astype(dtype), vol.affine)
    hdr = img.header
    hdr.set_data_dtype(dtype)
    # Both sform and qform carry the input affine (codes kept from the source when it had them).
    img.set_sform(vol.affine, code=int(source_meta.get("sform_code") or 1))
    img.set_qform(vol.affine, code=int(source_meta.get("qform_code") or 1))
    hdr["scl_slope"], hdr["scl_inter"] = 1.0, 0.0
    hdr.set_xyzt_units("mm", "sec")
    hdr["descrip"] = description.encode("ascii", "replace")[:79]
    with atomic_path(path, overwrite=True) as tmp:
        nib.save(img, str(tmp))
    return path


# -- PNG / JPEG ---------------------------------------------------------------------------------------


def _read_picture(path: Path, modality: str | None) -> Volume:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im: Image.Image = opened
            if im.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                im = im.convert("L")  # colour or palette chest X-ray exports: use the luminance
            px = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image '{path.name}': {' '.join(str(exc).split())[:120]}",
                         "pass a PNG, JPEG or DICOM file") from exc
    # Same voxel convention as DICOM: (i, j) = (column, row), one slice; unit pixels, no position.
    return Volume(px.T[:, :, None], LPS @ np.eye(4), modality, {"format": "picture", "path": str(path)})


# -- ITK (MHA/NRRD) -----------------------------------------------------------------------------------


def _read_itk(path: Path, modality: str | None) -> Volume:
    import SimpleITK as sitk  # noqa: N813

    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read '{path.name}': {' '.join(str(exc).split())[:160]}", "check the file") from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"'{path.name}' is not a 3-D scalar volume", "pass a 3-D grey-level volume")
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(np.float32)
    d = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())[None, :]
    aff = np.eye(4)
    aff[:3, :3], aff[:3, 3] = d, img.GetOrigin()
    return Volume(arr, LPS @ aff, modality, {"format": "itk", "path": str(path)})


def _write_itk(vol: Volume, path: Path) -> Path:
    import SimpleITK as sitk  # noqa: N813

    lps = LPS @ vol.affine
    sp = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    img = sitk.GetImageFromArray(np.asarray(vol.array, dtype=np.float32).transpose(2, 1, 0))
    img.SetSpacing(sp.tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    img.SetDirection((lps[:3, :3] / sp[None, :]).ravel().tolist())
    with atomic_path(path, overwrite=True) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
    return path


# -- DICOM --------------------------------------------------------------------------------------------


def _dicom_files(path: Path, tmpdir: str) -> list[Path]:
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    target = (Path(tmpdir) / member).resolve()
                    if not str(target).startswith(str(Path(tmpdir).resolve())):
                        raise InputError(f"zip '{path.name}' has an unsafe member '{member}'", "re-create the zip")
                zf.extractall(tmpdir)
        except zipfile.BadZipFile as exc:
            raise InputError(f"'{path.name}' is not a valid zip file", "re-create the zip") from exc
        return [p for p in Path(tmpdir).rglob("*") if p.is_file()]
    if path.is_file():
        return [path]
    return [p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]


def _read_dicom(path: Path, modality: str | None, series: str | None) -> Volume:
    import pydicom

    with tempfile.TemporaryDirectory() as tmpdir:
        groups: dict[str, list[Any]] = {}
        for f in _dicom_files(path, tmpdir):
            try:
                ds = pydicom.dcmread(str(f))
            except Exception:  # noqa: BLE001,S112 - non-DICOM files in a folder are skipped
                continue
            if "PixelData" not in ds or "ImagePositionPatient" not in ds:
                continue
            if "LOCALIZER" in [str(v).upper() for v in (ds.get("ImageType") or [])]:
                continue
            groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
        if not groups:
            raise InputError(f"no DICOM images found in '{path}'", "pass a DICOM series folder, .zip or .dcm file")
        if series is not None:
            if series not in groups:
                raise DicomSeriesError(f"series {series} is not in '{path}'", f"choose one of: {', '.join(groups)}")
            slices = groups[series]
        elif len(groups) > 1:
            listing = "; ".join(f"{uid} ({g[0].get('SeriesDescription', '')}, {len(g)} slices)"
                                for uid, g in groups.items())
            raise DicomSeriesError(f"'{path}' holds {len(groups)} series: {listing}", "pick one with --series UID")
        else:
            slices = next(iter(groups.values()))
        return _stack_dicom(slices, modality, path)


def _stack_dicom(slices: list[Any], modality: str | None, path: Path) -> Volume:
    first = slices[0]
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    slices = sorted(slices, key=lambda d: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])))
    pos = np.array([[float(v) for v in d.ImagePositionPatient] for d in slices])
    try:
        planes = []
        for d in slices:
            px = d.pixel_array.astype(np.float32)
            planes.append(px * float(d.get("RescaleSlope", 1) or 1) + float(d.get("RescaleIntercept", 0) or 0))
    except Exception as exc:  # noqa: BLE001 - pydicom raises several types for undecodable pixel data
        raise InputError(f"cannot decode the pixel data in '{path}': {' '.join(str(exc).split())[:120]}",
                         "convert the series to an uncompressed transfer syntax") from exc
    arr = np.stack([p.T for p in planes], axis=-1)  # (columns, rows, slices) = (i, j, k)
    dr, dc = (float(v) for v in first.PixelSpacing)
    if len(slices) > 1:
        step = (pos[-1] - pos[0]) / (len(slices) - 1)
    else:
        step = normal * float(first.get("SliceThickness", 1.0) or 1.0)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * dc, col * dr, step, pos[0]
    meta: dict[str, Any] = {k: str(first.get(k)) for k in _PATIENT_STUDY if k in first}
    meta.update({"format": "dicom", "path": str(path), "n_slices": len(slices)})
    mod = modality or modalities.from_dicom(meta.get("Modality"))
    return Volume(arr, LPS @ lps, mod, meta)


def _write_dicom(vol: Volume, path: Path, src: dict[str, Any], description: str, overwrite: bool) -> Path:
    import datetime as _dt

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    arr = np.asarray(vol.array, dtype=np.float32)
    is_ct = vol.modality == "ct"
    is_std = "std" in description.lower()
    sop_class = CT_STORAGE if is_ct else MR_STORAGE
    absmax = float(np.abs(arr).max()) if arr.size else 0.0
    # CT means are int16 HU (slope 1); anything else (MRI, std maps) is scaled into int16 by a slope.
    slope = 1.0 if (is_ct and not is_std) else max(absmax / 30000.0, 1e-6)
    lps = LPS @ vol.affine
    sp = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    row_cos, col_cos = lps[:3, 0] / sp[0], lps[:3, 1] / sp[1]
    series_uid = generate_uid()
    same_study = bool(src.get("StudyInstanceUID"))
    study_uid = src.get("StudyInstanceUID") or generate_uid()
    # Same patient coordinate system as the source grid: keep its frame of reference.
    for_uid = src.get("FrameOfReferenceUID") if same_study and src.get("FrameOfReferenceUID") else generate_uid()
    now = _dt.datetime.now()
    with atomic_dir(path, overwrite=overwrite) as tmp:
        for k in range(arr.shape[2]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = UID(sop_class)  # pydicom converts str to UID anyway
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
                        "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription"):
                if src.get(key) not in (None, "None"):
                    setattr(ds, key, src[key])
            if "PatientName" not in ds:
                ds.PatientName, ds.PatientID = "SYNTHETIC^MEDM2G", "SYNTHETIC"
            ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.FrameOfReferenceUID = for_uid
            ds.Modality = "CT" if is_ct else "MR"
            ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
            ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
            ds.ImageType = ["DERIVED", "SECONDARY"]
            ds.SyntheticData = "YES"
            ds.ContentQualification = "RESEARCH"
            label = description.split(";")[0].removeprefix("SYNTHETIC").strip()
            ds.SeriesDescription = f"SYNTHETIC {label} - not for diagnosis"[:64]
            ds.DerivationDescription = description[:1024]
            ds.Manufacturer, ds.SoftwareVersions = "medm2g", __version__
            ds.SeriesNumber, ds.InstanceNumber = 9001, k + 1
            ds.ImagePositionPatient = [f"{v:.6f}" for v in (lps @ np.array([0, 0, k, 1.0]))[:3]]
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_cos, *col_cos)]
            ds.PixelSpacing = [f"{sp[1]:.6f}", f"{sp[0]:.6f}"]
            ds.SliceThickness = f"{sp[2]:.6f}"
            ds.SpacingBetweenSlices = f"{sp[2]:.6f}"
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            plane = arr[:, :, k].T
            ds.Rows, ds.Columns = plane.shape
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", "0"
            if is_ct:
                ds.RescaleType = "HU"
                ds.WindowCenter, ds.WindowWidth = "40", "400"
            ds.PixelData = np.clip(np.rint(plane / slope), -32768, 32767).astype("<i2").tobytes()
            ds.save_as(tmp / f"slice_{k + 1:04d}.dcm", enforce_file_format=True)
    return path


# -- registration ---------------------------------------------------------------------------------------


def register_to(fixed: Volume, moving: Volume) -> tuple[Volume, float]:
    """Rigidly register ``moving`` to ``fixed`` and resample it onto ``fixed``'s grid.

    Uses :func:`medm2g_cli.io.registration.register` when installed; otherwise SimpleITK directly
    (Mattes mutual information, multi-resolution, geometry-centred initialisation).
    Returns (resampled volume on the fixed grid, final metric value).
    """
    try:
        from ..io.registration import register
    except ImportError:
        pass
    else:
        res = register(fixed, moving, transform="rigid")
        return res.resampled, float(res.metric)
    import SimpleITK as sitk  # noqa: N813

    def to_itk(v: Volume) -> Any:
        lps = LPS @ v.affine
        sp = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
        img = sitk.GetImageFromArray(np.asarray(v.array, dtype=np.float32).transpose(2, 1, 0))
        img.SetSpacing(sp.tolist())
        img.SetOrigin(lps[:3, 3].tolist())
        img.SetDirection((lps[:3, :3] / sp[None, :]).ravel().tolist())
        return img

    f, m = to_itk(fixed), to_itk(moving)
    init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.25, seed=0)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=100)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1, 0])
    reg.SetInitialTransform(init, inPlace=False)
    tx = reg.Execute(f, m)
    out = sitk.Resample(m, f, tx, sitk.sitkLinear, float(np.min(moving.array)), sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(out).transpose(2, 1, 0)
    return fixed.with_array(arr, modality=moving.modality), float(reg.GetMetricValue())
