"""De-identification of DICOM datasets: the DICOM PS3.15 Annex E Basic Application Level
Confidentiality Profile, with the Clean Descriptors Option for the descriptions medm2g writes itself.

What :func:`anonymize_dataset` does to a dataset (recursively, sequences included):

- **D/Z (replaced)**: PatientName and PatientID by ``ANONYMOUS``; the type-2 attributes the IODs
  require (PatientBirthDate, PatientSex, StudyDate/Time, ContentDate/Time, AccessionNumber, StudyID,
  ReferringPhysicianName) emptied.
- **X (removed)**: every other identifying attribute of the profile (addresses, other IDs, ages,
  sizes, institutions, stations, device serials, physicians and operators, free-text comments,
  histories, every other date and time), curves, overlays and all private tags.
- **U (UIDs remapped)**: every instance UID (Study, Series, SOP, Frame of Reference, referenced
  instances ...) is replaced by a new one derived from it with a per-process random salt, so the same
  source UID maps to the same new UID across all files of a run (series stay series, a std map stays in
  its study), while the original cannot be recovered. Class UIDs (SOP Class, Transfer Syntax, coding
  schemes) are kept.
- **C (cleaned, Clean Descriptors Option)**: free-text descriptors are replaced by fixed text that
  cannot carry identity — SeriesDescription by ``SYNTHETIC - not for diagnosis`` (or ``DERIVED``
  for an image not marked synthetic), DerivationDescription by ``medm2g <version>``; the other
  free-text descriptors (image, frame and acquisition comments, content and protocol descriptions,
  labels) are removed.
- PatientIdentityRemoved = YES, DeidentificationMethod and its code sequence (DCM 113100 Basic
  Profile, 113105 Clean Descriptors) and LongitudinalTemporalInformationModified = REMOVED are set.

Pixel data are untouched: medm2g writes synthetic images without burned-in text (BurnedInAnnotation NO).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

PROFILE = "DICOM PS3.15 Basic Profile; Clean Descriptors Option"  # LO: at most 64 characters
ANONYMOUS = "ANONYMOUS"

# Z: kept as empty (type 2) values; D: replaced by a dummy.
# ContentLabel (Type 1) and ContentDescription (Type 2) of the Content Identification macro (Parametric
# Map, SR, ...) may carry operator free text: replaced/emptied (Clean Descriptors) rather than removed,
# so the object stays valid.
_DUMMY = {"PatientName": ANONYMOUS, "PatientID": ANONYMOUS, "ContentLabel": ANONYMOUS}
_EMPTY = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ContentDate", "ContentTime",
          "AccessionNumber", "StudyID", "ReferringPhysicianName", "ContentDescription")

# X: removed (PS3.15 Table E.1-1, Basic Profile column; the attributes medm2g or common sources carry).
_REMOVE = (
    "PatientBirthTime", "PatientBirthName", "PatientAge", "PatientSize", "PatientWeight", "PatientAddress",
    "PatientMotherBirthName", "PatientTelephoneNumbers", "PatientTelecomInformation", "OtherPatientIDs",
    "OtherPatientIDsSequence", "OtherPatientNames", "MilitaryRank", "BranchOfService", "MedicalRecordLocator",
    "EthnicGroup", "Occupation", "AdditionalPatientHistory", "PatientComments", "PatientReligiousPreference",
    "PatientInsurancePlanCodeSequence", "PatientState", "PregnancyStatus", "LastMenstrualDate", "SmokingStatus",
    "MedicalAlerts", "Allergies", "CountryOfResidence", "RegionOfResidence", "ResponsiblePerson",
    "ResponsibleOrganization", "IssuerOfPatientID", "PatientSexNeutered", "PatientSpeciesDescription",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "StationName", "DeviceSerialNumber", "DeviceUID", "PlateID", "DetectorID", "GantryID", "CassetteID",
    "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "RequestingPhysician", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName", "OperatorsName",
    "OperatorIdentificationSequence", "ScheduledPerformingPhysicianName", "RequestingService",
    "RequestAttributesSequence", "ReferencedPatientSequence", "ReferencedStudySequence",
    "AdmissionID", "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "CurrentPatientLocation",
    "PatientInstitutionResidence", "ServiceEpisodeID", "ServiceEpisodeDescription", "VisitComments",
    "StudyComments", "ImageComments", "InterpretationText", "ReasonForStudy", "RequestedProcedureDescription",
    "RequestedProcedureID", "PerformedProcedureStepID", "PerformedProcedureStepDescription",
    "PerformedLocation", "PerformedStationName", "ScheduledProcedureStepID", "ProtocolName",
    "StudyDescription", "AcquisitionComments", "ContrastBolusAgent",
    "IdentifyingComments", "TextComments", "TimezoneOffsetFromUTC", "InstanceCreatorUID",
    "FillerOrderNumberImagingServiceRequest", "PlacerOrderNumberImagingServiceRequest", "OrderEnteredBy",
    "OrderEntererLocation", "OrderCallbackPhoneNumber", "DigitalSignaturesSequence", "OriginalAttributesSequence",
)

# Clean Descriptors Option: free text that may carry names (file names, MRNs typed by an operator).
_CLEAN_REMOVE = (
    "AcquisitionDeviceProcessingDescription", "ContentCreatorName",
    "FrameComments", "LabelText", "SeriesDescriptionCodeSequence", "ImagePresentationComments",
    "DischargeDiagnosisDescription", "ScheduledProcedureStepDescription",
    "CommentsOnThePerformedProcedureStep", "ReasonForTheRequestedProcedure", "RequestedProcedureComments",
)

# UIDs that name a class or a scheme, not an instance: never remapped.
_CLASS_UIDS = {"SOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID", "ImplementationClassUID",
               "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile", "RelatedGeneralSOPClassUID",
               "OriginalSpecializedSOPClassUID", "CodingSchemeUID", "ContextGroupExtensionCreatorUID",
               "PrivateInformationCreatorUID", "ReferencedTransferSyntaxUIDInFile", "MappingResourceUID"}

_SALT = os.urandom(16).hex()  # one per process: consistent within a run, unlinkable across runs


def new_uid(old: str, salt: str | None = None) -> str:
    """The replacement of instance UID ``old``: deterministic for a salt, irreversible without it."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[salt or _SALT, str(old)]))


def _walk(ds: Any) -> Iterable[Any]:
    for elem in list(ds):
        yield ds, elem
        if elem.VR == "SQ":
            for item in elem.value or []:
                yield from _walk(item)


def anonymize_dataset(ds: Any, *, salt: str | None = None) -> Any:
    """Apply the Basic Profile to ``ds`` in place (and its file meta); returns ``ds``."""
    from pydicom.dataset import Dataset

    ds.remove_private_tags()
    for parent, elem in list(_walk(ds)):
        kw = elem.keyword
        if elem.tag not in parent:
            continue  # removed with an enclosing sequence
        if elem.tag.is_private:
            del parent[elem.tag]
        elif kw in _DUMMY:
            elem.value = _DUMMY[kw]
        elif kw in _EMPTY:
            elem.value = ""
        elif kw in _REMOVE or kw in _CLEAN_REMOVE or elem.tag.group & 0xFF00 in (0x5000, 0x6000):
            # curves (50xx) and overlays (60xx) can carry burned-in identity; 5200 (functional
            # groups of multi-frame objects such as a Parametric Map) and 54xx/56xx are image data
            del parent[elem.tag]
        elif elem.VR in ("DA", "DT", "TM"):
            del parent[elem.tag]  # every other date and time (no Retain Longitudinal option)
        elif elem.VR == "UI" and kw not in _CLASS_UIDS and elem.value:
            if elem.VM > 1:
                elem.value = [new_uid(str(v), salt) for v in elem.value]
            else:
                elem.value = new_uid(str(elem.value), salt)
    fm = getattr(ds, "file_meta", None)
    if fm is not None and "MediaStorageSOPInstanceUID" in fm:
        fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID if "SOPInstanceUID" in ds else \
            new_uid(fm.MediaStorageSOPInstanceUID, salt)
    for kw, value in _DUMMY.items():
        setattr(ds, kw, value)
    _clean_descriptors(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = PROFILE
    codes = []
    for value, meaning in (("113100", "Basic Application Confidentiality Profile"),
                           ("113105", "Clean Descriptors Option")):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    return ds


def _clean_descriptors(ds: Any) -> None:
    """Replace the descriptions that stay (the IOD or a reader needs them) by fixed text."""
    from .. import __version__

    if "SeriesDescription" in ds:
        synthetic = str(ds.get("SyntheticData", "")).upper() == "YES"
        ds.SeriesDescription = "SYNTHETIC - not for diagnosis" if synthetic else "DERIVED"
    if "DerivationDescription" in ds:
        ds.DerivationDescription = f"medm2g {__version__}"


def anonymize_series(datasets: Iterable[Any], *, salt: str | None = None) -> list[Any]:
    """Anonymize every dataset of a series with one UID mapping; returns them."""
    return [anonymize_dataset(ds, salt=salt) for ds in datasets]
