"""The medm2g error hierarchy.

Every failure a user can cause (bad input, existing output, missing weights, bad config) is raised
as a :class:`MedM2GError`. The CLI turns it into one line on stderr::

    error: <what is wrong> — <what to do>

and exit code 2 (``--debug`` shows the traceback). Library users can catch the subclasses.
"""

from __future__ import annotations


class MedM2GError(Exception):
    """Base class of every error medm2g reports to the user.

    ``message`` says what is wrong; ``hint`` says what to do about it.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The single line the CLI prints (newlines folded, so it really is one line)."""
        text = self.message if not self.hint else f"{self.message} — {self.hint}"
        return " ".join(text.split())


class InputError(MedM2GError):
    """An input path is missing, unreadable, corrupt or of the wrong kind."""


class FormatError(InputError):
    """A file's format is unknown or not supported for this operation."""


class GeometryError(InputError):
    """A volume's geometry is inconsistent (slice spacing, gantry tilt, mismatched grids)."""


class DicomSeriesError(InputError):
    """A DICOM folder holds no series, or several where one is needed."""


class ModalityError(InputError):
    """The input's modality does not fit the requested operation (e.g. CT given to mri2ct)."""


class OutOfDomainError(InputError):
    """``--strict``: the input is outside the model's domain (the applicability guard warned)."""


class OutputError(MedM2GError):
    """An output cannot be written (exists without --overwrite, folder missing or read-only, disk full)."""


class OutputExistsError(OutputError):
    """The output already exists and --overwrite was not given."""


class WeightsError(MedM2GError):
    """A model folder is missing, incomplete, tampered with, or lacks a needed branch."""


class ConfigError(MedM2GError):
    """A configuration, preset, flow or option combination is invalid."""


class DataError(MedM2GError):
    """A dataset folder or manifest does not match what was expected."""


class DependencyError(MedM2GError):
    """An optional dependency or external file (Java, FID weights) is not available."""


class MedM2GWarning(UserWarning):
    """A warning the CLI shows as one ``warning: <text>`` line on stderr (each text once per run)."""


class IdentityWarning(MedM2GWarning):
    """An output carries a patient's identity (PatientName/PatientID of a DICOM source, not anonymised)."""
