"""Volume writing and registration for the inference commands (they read with medm2g_cli.io.read_volume).

A thin seam over the package I/O layer (:mod:`medm2g_cli.io`), so the commands depend on one
contract: geometry kept with pixels (RAS affine in, the same affine out), DICOM outputs as derived
synthetic series (anonymised on request), atomic writes that never replace an output without
``overwrite``. There is deliberately no second implementation here: one reader and one writer means
``--anonymize`` and the geometry rules cannot diverge between commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io.volume import Volume


def write_volume(vol: Volume, path: Path, *, format: str, overwrite: bool = False,  # noqa: A002 - io contract
                 source_meta: dict[str, Any] | None = None, description: str = "", anonymize: bool = False) -> Path:
    """Write ``vol`` on its grid (nifti | dicom | mha | nrrd), atomically and never over an
    existing output unless ``overwrite``. A DICOM output references its DICOM source as a model
    synthesis (DerivationImageSequence)."""
    from .. import io as pkg_io
    from ..io.dicom_write import SYNTHESIS_CODE

    pkg_io.write_volume(vol, path, format=format, overwrite=overwrite, source_meta=source_meta,
                        description=description, anonymize=anonymize, derivation=SYNTHESIS_CODE)
    return Path(path)


def write_std_map(std: Volume, path: Path, *, format: str, overwrite: bool = False,  # noqa: A002 - io contract
                  source_meta: dict[str, Any] | None = None, description: str = "", anonymize: bool = False,
                  weights: Path | None = None) -> Path:
    """Write a per-voxel standard deviation of K samples: a DICOM Parametric Map (float32, one
    multi-frame instance in folder ``path``; the model named by the ``weights`` hash) for ``dicom``,
    else as :func:`write_volume`."""
    if format != "dicom":
        return write_volume(std, path, format=format, overwrite=overwrite, source_meta=source_meta,
                            description=description, anonymize=anonymize)
    from ..io.atomic import check_output
    from ..io.dicom_objects import write_parametric_map
    from .dicom_out import model_name
    from .runtime import weights_hash

    check_output(path, overwrite)
    return write_parametric_map(std, path, source_meta=source_meta, description=description,
                                model_name=model_name(weights) if weights else "medm2g",
                                serial=weights_hash(weights)[:16] if weights else "unknown",
                                overwrite=overwrite, anonymize=anonymize)


def register_to(fixed: Volume, moving: Volume) -> tuple[Volume, float]:
    """Rigidly register ``moving`` to ``fixed`` (SimpleITK, Mattes mutual information) and resample it
    onto ``fixed``'s grid. Returns (resampled volume on the fixed grid, final metric value)."""
    from ..io.registration import register

    res = register(fixed, moving, transform="rigid")
    return res.resampled, float(res.metric)
