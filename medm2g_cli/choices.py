"""The closed sets of values the options take, as ``str`` Enums (so ``--help`` lists them), and the
parsers that accept exactly what the commands accept (case, aliases) with the one-line
:class:`ConfigError` of the API when a value is not one of them.

Light on purpose (no torch, no numpy): the command modules import it to build ``--help``.
Each set comes from the code that uses it (sampler settings from :mod:`.config`, precisions from
:mod:`.inference.runtime`, directions from the modality registry :mod:`.modalities`).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

from . import modalities
from .config import SAMPLERS, SPACINGS
from .errors import ConfigError
from .inference.runtime import PRECISIONS, parse_device_spec

E = TypeVar("E", bound=Enum)


def _members(values: Any) -> dict[str, str]:
    return {str(v): str(v) for v in values}


class Device(str, Enum):
    """``--device``: these, or ``cuda:N`` (and ``gpu`` for cuda), any case."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Axis(str, Enum):
    """``--axis``: the slicing axis of 2D models on volumes."""

    axial = "axial"
    coronal = "coronal"
    sagittal = "sagittal"


class OutputFormat(str, Enum):
    """``--format`` of volume outputs (``nii``/``nii.gz`` mean nifti; any case)."""

    nifti = "nifti"
    dicom = "dicom"
    mha = "mha"
    nrrd = "nrrd"


class ImageFormat(str, Enum):
    """``--format`` of generated images (any case)."""

    png = "png"
    dicom = "dicom"


class Decoding(str, Enum):
    """``--decoding`` of generated report text."""

    greedy = "greedy"
    beam = "beam"


class Precision(str, Enum):
    """``--precision`` (:data:`medm2g_cli.inference.runtime.PRECISIONS`)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Sampler(str, Enum):
    """``--sampler`` (:data:`medm2g_cli.config.SAMPLERS`)."""

    ddim = "ddim"
    dpmpp = "dpm++"
    sde_dpmpp = "sde-dpm++"
    unipc = "unipc"


class Spacing(str, Enum):
    """``--spacing`` (:data:`medm2g_cli.config.SPACINGS`)."""

    leading = "leading"
    linspace = "linspace"
    trailing = "trailing"
    karras = "karras"


# The sets the engine and runtime check; tests/test_choices.py keeps the Enums equal to them.
SOURCES: dict[type[Enum], tuple[str, ...]] = {Precision: PRECISIONS, Sampler: SAMPLERS, Spacing: SPACINGS}

Direction = Enum("Direction", _members(sorted(modalities.translation_directions())), type=str)  # type: ignore[misc]
"""``translate`` directions, from the modality registry (``mri2ct``, ``t1-t2``, ...)."""

OUTPUT_FORMATS: tuple[str, ...] = tuple(f.value for f in OutputFormat)


def value(x: Any) -> Any:
    """The plain value of an Enum member (what the API and the run reports take); others as given."""
    return x.value if isinstance(x, Enum) else x


def _exact(enum: type[E], what: str) -> Callable[[Any], E]:
    """A parser accepting the members' values as written (the API's own check, same message)."""

    def parse(text: Any) -> E:
        if isinstance(text, enum):
            return text
        try:
            return enum(text)
        except ValueError:
            raise ConfigError(f"unknown {what} '{text}'", f"use one of: {', '.join(str(m.value) for m in enum)}") from None

    return parse


def parse_device(text: Any) -> str:
    """``--device``: auto|cpu|cuda|cuda:N|mps (any case, ``gpu`` = cuda), normalised."""
    return parse_device_spec(str(value(text)))


def parse_output_format(text: Any) -> OutputFormat:
    """``--format`` of volumes: nifti|dicom|mha|nrrd, any case, ``nii``/``nii.gz`` for nifti."""
    if isinstance(text, OutputFormat):
        return text
    f = str(text).lower()
    f = "nifti" if f in ("nii", "nii.gz") else f
    if f not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format '{text}'", f"use one of: {', '.join(OUTPUT_FORMATS)}")
    return OutputFormat(f)


def parse_image_format(text: Any) -> ImageFormat:
    """``--format`` of generated images: png|dicom, any case."""
    if isinstance(text, ImageFormat):
        return text
    f = str(text).lower()
    if f not in ("png", "dicom"):
        raise ConfigError(f"unknown image format '{f}'", "use png or dicom")
    return ImageFormat(f)


def parse_direction(text: Any) -> Any:
    """A ``translate`` direction, any case, surrounding spaces ignored."""
    if isinstance(text, Direction):
        return text
    key = str(text).lower().strip()
    if key not in Direction.__members__:
        raise ConfigError(f"unknown direction '{text}'", f"use one of: {', '.join(Direction.__members__)}")
    return Direction(key)


parse_precision = _exact(Precision, "precision")
parse_sampler = _exact(Sampler, "sampler")
parse_spacing = _exact(Spacing, "timestep spacing")
parse_axis = _exact(Axis, "axis")
parse_decoding = _exact(Decoding, "decoding")
