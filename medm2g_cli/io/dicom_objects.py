"""DICOM objects built with highdicom: the K-sample standard deviation as a Parametric Map, generated
images as Secondary Capture, and generated report text as a Comprehensive SR.

All three are marked synthetic (SyntheticData YES) and carry the model as provenance (manufacturer
``medm2g``, model name, weights hash); none carries an input file name or path. With a DICOM
source they join the source's study and reference its instances; otherwise they open a new study
whose Type 2 patient/study attributes are empty.

highdicom builds patient, study and reference modules from the *source datasets*; medm2g keeps only
the source's header values in ``Volume.meta``, so header-only stand-ins are rebuilt from that
metadata (same UIDs, same geometry). Where no DICOM source exists the stand-ins only carry the new
study and geometry, and the references highdicom derives from them are removed again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .atomic import atomic_dir, atomic_path
from .dicom import CT_STORAGE, LPS, MR_STORAGE
from .dicom_write import SAMPLE_SD_CODE, add_references, ds_string, patient_study, same_grid, slice_sources
from .volume import Volume

REPORT_NOTE = "Generated text: synthetic, not a diagnosis; not verified by a physician."


def _code(code: tuple[str, str, str]) -> Any:
    from pydicom.sr.coding import Code

    return Code(code[0], code[1], code[2])


def _study_standin(src: dict[str, Any], study_uid: str) -> Any:
    """A header-only dataset holding the patient and study modules highdicom copies."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    for key, value in patient_study(src).items():
        setattr(ds, key, value)
    ds.StudyInstanceUID = study_uid
    ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _save(ds: Any, path: Path, overwrite: bool, anonymize: bool) -> Path:
    """One dataset to ``path`` (a ``.dcm`` file, or a folder holding ``<first 2 letters>00001.dcm``)."""
    if anonymize:
        from .anonymize import anonymize_dataset

        serial = ds.get("DeviceSerialNumber")  # the model's identity (weights hash), not the patient's
        anonymize_dataset(ds)
        if serial:
            ds.DeviceSerialNumber = serial
        for kw, dummy in (("ContentDate", "19000101"), ("ContentTime", "000000")):
            if kw in ds and not ds[kw].value:  # Type 1 in a Parametric Map: PS3.15 action D, a dummy value
                setattr(ds, kw, dummy)
    if path.suffix.lower() == ".dcm":
        with atomic_path(path, overwrite=overwrite) as tmp:
            ds.save_as(str(tmp), enforce_file_format=True)
        return path
    with atomic_dir(path, overwrite=overwrite) as tmp:
        ds.save_as(str(tmp / "PM00001.dcm"), enforce_file_format=True)
    return path


# -- Parametric Map --------------------------------------------------------------------------------


def build_parametric_map(std: Volume, *, source_meta: dict[str, Any] | None = None, description: str = "",
                         model_name: str = "medm2g", serial: str = "unknown") -> Any:
    """The per-voxel standard deviation ``std`` as a float32 Parametric Map (one multi-frame instance).

    On a DICOM source's grid each frame references its source slice (per-frame Derivation Image
    Sequence, code :data:`SAMPLE_SD_CODE`); units are HU for CT, arbitrary units otherwise.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    src = dict(source_meta or {})
    arr = np.asarray(std.array, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    n = arr.shape[2]
    lps = LPS @ std.affine
    a0, a1, a2 = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    col_sp, row_sp = float(np.linalg.norm(a0)), float(np.linalg.norm(a1))
    r, c = a0 / col_sp, a1 / row_sp
    thick = float(abs(a2 @ np.cross(r, c))) or float(np.linalg.norm(a2)) or 1.0
    refs = slice_sources(src, std, n)
    # highdicom's own references are right only when slice k has exactly source instance k
    one_to_one = all(len(x) == 1 and x[0][2] is None for x in refs) and len({x[0][1] for x in refs}) == n
    study_uid = str(src.get("StudyInstanceUID") or generate_uid())
    keep_for = (same_grid(src, std) or "affine" not in src) and src.get("FrameOfReferenceUID")
    for_uid = str(src["FrameOfReferenceUID"]) if keep_for else str(generate_uid())
    is_ct = (std.modality or "").lower() == "ct"
    stand_ins = []
    series_uid = str(src.get("SeriesInstanceUID")) if one_to_one else str(generate_uid())
    for k in range(n):
        ds = _study_standin(src, study_uid)
        ds.SeriesInstanceUID = series_uid
        ds.SOPClassUID = refs[k][0][0] if one_to_one else (CT_STORAGE if is_ct else MR_STORAGE)
        ds.SOPInstanceUID = refs[k][0][1] if one_to_one else str(generate_uid())
        ds.Modality = "CT" if is_ct else "MR"
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[0])
        ds.ImageOrientationPatient = [float(ds_string(v)) for v in (*r, *c)]
        ds.ImagePositionPatient = [float(ds_string(v)) for v in lps[:3, 3] + k * a2]
        ds.PixelSpacing = [float(ds_string(row_sp)), float(ds_string(col_sp))]
        ds.SliceThickness = float(ds_string(thick))
        stand_ins.append(ds)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
    width = hi - lo if hi > lo else 1.0
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="SAMPLE_SD", lut_explanation="Standard deviation of generated samples",
        unit=codes.UCUM.HounsfieldUnit if is_ct else codes.UCUM.ArbitraryUnit, value_range=(lo, hi),
        slope=1.0, intercept=0.0, quantity_definition=codes.SCT.StandardDeviation)
    pm = hd.pm.ParametricMap(
        source_images=stand_ins, pixel_array=np.ascontiguousarray(np.transpose(arr, (2, 1, 0))),
        series_instance_uid=str(generate_uid()), series_number=int(src.get("SeriesNumber", 0) or 0) + 1100,
        sop_instance_uid=str(generate_uid()), instance_number=1, manufacturer="medm2g",
        manufacturer_model_name=model_name[:64], software_versions=__version__, device_serial_number=serial[:64],
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(
            window_center=(lo + hi) / 2, window_width=width,
            voi_lut_function="LINEAR_EXACT" if width < 1 else None)],  # LINEAR needs a width >= 1
        content_label="SAMPLE_SD", content_description="Standard deviation of generated samples"[:64],
        derivation=_code(SAMPLE_SD_CODE),
    )
    if not one_to_one:  # references to stand-ins that do not exist: drop them, name the real source if any
        for kw in ("SourceImageSequence", "ReferencedSeriesSequence"):
            if kw in pm:
                delattr(pm, kw)
        for item in pm.PerFrameFunctionalGroupsSequence:
            if "DerivationImageSequence" in item:
                del item.DerivationImageSequence
        whole = list(dict.fromkeys(ref for x in refs for ref in x))
        if whole:
            add_references(pm, whole, str(src.get("SeriesInstanceUID", "")), None, "")
    pm.SyntheticData = "YES"
    pm.Laterality = ""  # Type 2C: a paired body part's side is not known here
    pm.BurnedInAnnotation = "NO"
    pm.SeriesDescription = f"SYNTHETIC - not for diagnosis - {description or 'UNCERTAINTY (std)'}"[:64]
    pm.DerivationDescription = f"medm2g {__version__}: {description}"[:1024]
    return pm


def write_parametric_map(std: Volume, path: str | Path, *, source_meta: dict[str, Any] | None = None,
                         description: str = "", model_name: str = "medm2g", serial: str = "unknown",
                         overwrite: bool = False, anonymize: bool = False) -> Path:
    """Write :func:`build_parametric_map` atomically: ``path`` ending in ``.dcm`` is the file, any
    other ``path`` a folder holding ``PM00001.dcm``."""
    pm = build_parametric_map(std, source_meta=source_meta, description=description, model_name=model_name,
                              serial=serial)
    return _save(pm, Path(path), overwrite, anonymize)


# -- Secondary Capture -----------------------------------------------------------------------------


def build_secondary_capture(pixels: np.ndarray, *, study: dict[str, Any], series_uid: str, instance: int,
                            description: str, derivation: str, model_name: str = "medm2g",
                            orientation: tuple[str, str] = ("L", "F")) -> Any:
    """A generated 2-D image (rows x columns, uint8 or uint16) as a synthetic Secondary Capture.

    ``orientation`` is the PatientOrientation of the display convention the model was trained on
    (rows towards, columns towards): ``L\\F`` for a PA chest X-ray, ``L\\P`` for an axial slice.

    ``study`` is the metadata of the study it joins (:func:`.dicom_write.case_context`); all images
    of one run share ``study`` and ``series_uid``.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    pixels = np.ascontiguousarray(pixels)
    bits = 8 if pixels.dtype == np.uint8 else 16
    ps = patient_study(study)
    sc = hd.sc.SCImage(
        pixel_array=pixels, photometric_interpretation="MONOCHROME2", bits_allocated=bits,
        coordinate_system="PATIENT", patient_orientation=orientation,
        study_instance_uid=str(study["StudyInstanceUID"]), series_instance_uid=series_uid, series_number=9001,
        sop_instance_uid=str(generate_uid()), instance_number=instance, manufacturer="medm2g",
        patient_id=ps["PatientID"], patient_name=ps["PatientName"], patient_birth_date=ps["PatientBirthDate"] or None,
        patient_sex=ps["PatientSex"] or None, accession_number=ps["AccessionNumber"] or None,
        study_id=ps["StudyID"] or None, study_date=ps["StudyDate"] or None, study_time=ps["StudyTime"] or None,
        referring_physician_name=ps["ReferringPhysicianName"] or None,
    )
    sc.SpecificCharacterSet = "ISO_IR 192"
    sc.ConversionType = "SYN"  # synthetic image (PS3.3 C.8.6.1)
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.SyntheticData = "YES"
    sc.Laterality = ""
    sc.BurnedInAnnotation = "NO"
    sc.SeriesDescription = description[:64] if description.upper().startswith("SYNTHETIC") else \
        f"SYNTHETIC {description}"[:64]
    sc.DerivationDescription = derivation[:1024]
    sc.ManufacturerModelName = model_name[:64]
    sc.SoftwareVersions = __version__
    return sc


# -- Structured Report -----------------------------------------------------------------------------


def ut_text(text: str) -> str:
    """``text`` as a valid UT value: control characters other than TAB, LF, FF and CR (which a
    decoder can emit) become spaces; everything else, non-ASCII included (UTF-8), is kept."""
    return "".join(" " if (ord(ch) < 32 and ch not in "\t\n\f\r") or ord(ch) == 127 else ch for ch in text)


def build_report_sr(text: str, *, source_meta: dict[str, Any] | None = None, model_name: str = "medm2g",
                    device_uid: str | None = None, description: str = "") -> Any:
    """Generated report ``text`` as a Comprehensive SR observed by a device (the model).

    Content: Diagnostic Imaging Report > Findings > Finding (the text, INFERRED FROM the X-ray image
    when it was DICOM) and a Comment saying the text is generated. A DICOM X-ray's study is kept and
    its instance referenced (Current Requested Procedure Evidence); otherwise a new study.
    """
    import highdicom as hd
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    src = dict(source_meta or {})
    text = ut_text(text).strip() or "(the model generated no text)"  # TEXT's value is Type 1
    inst = [tuple(x) for x in src.get("source_instances") or []]
    ref = (str(inst[0][0]), str(inst[0][1])) if inst and src.get("StudyInstanceUID") else None
    study_uid = str(src.get("StudyInstanceUID") or generate_uid()) if ref else str(generate_uid())
    evidence = _study_standin(src if ref else {}, study_uid)
    evidence.SeriesInstanceUID = str(src.get("SeriesInstanceUID")) if ref else str(generate_uid())
    evidence.SOPClassUID, evidence.SOPInstanceUID = ref if ref else ("1.2.840.10008.5.1.4.1.1.7", str(generate_uid()))

    rel = hd.sr.RelationshipTypeValues
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid or str(generate_uid(entropy_srcs=[model_name])), name="medm2g",
            manufacturer_name="medm2g", model_name=model_name[:64]))
    finding = hd.sr.TextContentItem(name=codes.DCM.Finding, value=text, relationship_type=rel.CONTAINS)
    if ref:
        finding.ContentSequence = DicomSequence([hd.sr.ImageContentItem(
            name=codes.DCM.SourceImage, referenced_sop_class_uid=ref[0], referenced_sop_instance_uid=ref[1],
            relationship_type=rel.INFERRED_FROM)])
    findings = hd.sr.ContainerContentItem(name=codes.DCM.Findings, relationship_type=rel.CONTAINS)
    findings.ContentSequence = DicomSequence([finding])
    note = hd.sr.TextContentItem(name=codes.DCM.Comment, value=f"{REPORT_NOTE} medm2g {__version__}, {model_name}.",
                                 relationship_type=rel.CONTAINS)
    root = hd.sr.ContainerContentItem(name=codes.LN.DiagnosticImagingReport)
    root.ContentSequence = DicomSequence([*observer, findings, note])
    sr = hd.sr.ComprehensiveSR(
        evidence=[evidence], content=root, series_instance_uid=str(generate_uid()), series_number=9100,
        sop_instance_uid=str(generate_uid()), instance_number=1, manufacturer="medm2g", is_complete=True,
        is_final=False, is_verified=False)
    if not ref and "CurrentRequestedProcedureEvidenceSequence" in sr:
        del sr.CurrentRequestedProcedureEvidenceSequence  # the stand-in instance does not exist
    sr.SyntheticData = "YES"
    sr.SeriesDescription = f"SYNTHETIC report - not for diagnosis{' - ' + description if description else ''}"[:64]
    sr.ManufacturerModelName = model_name[:64]
    sr.SoftwareVersions = __version__
    return sr
