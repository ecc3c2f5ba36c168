"""Image registration with SimpleITK: Mattes mutual information, multi-resolution.

The moving image is always resampled onto the *fixed* grid, so the result can be written with the
fixed volume's affine and compared voxel by voxel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, GeometryError
from .itk import sitk_to_volume, volume_to_sitk
from .volume import Volume

TRANSFORMS: tuple[str, ...] = ("rigid", "affine", "bspline")
# With more than one thread the Mattes metric's per-thread partial sums (and so the result) vary from run
# to run, with either ITK threader and a fixed thread count: one thread makes registration reproducible
# (prepare gets its parallelism from --workers, one subject per process).
REGISTRATION_THREADS = 1


@dataclass
class RegistrationResult:
    """Outcome of :func:`register`: the moving image on the fixed grid, the final metric, the transform.

    ``metric`` is SimpleITK's Mattes mutual information value (negative; lower is better).
    ``transform`` maps fixed-image physical points (LPS) to moving-image points, as ITK defines it.
    """

    resampled: Volume
    metric: float
    transform: Any
    iterations: int = 0
    stop_condition: str = ""


def _fill_value(moving: Volume) -> float:
    a = np.asarray(moving.array)
    return float(a.min()) if a.size else 0.0


def resample_to(moving: Volume, fixed: Volume, transform: Any = None, *, interpolation: str = "linear",
                default_value: float | None = None) -> Volume:
    """Resample ``moving`` onto ``fixed``'s grid (optionally through ``transform``); keep its dtype.

    Points outside the moving image get ``default_value`` (the moving minimum by default, i.e. air
    for CT). ``interpolation`` is linear, nearest (labels) or bspline.
    """
    import SimpleITK as sitk  # noqa: N813

    interp = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}
    if interpolation not in interp:
        raise ConfigError(f"unknown interpolation '{interpolation}'", "use linear, nearest or bspline")
    m_arr = np.asarray(moving.array)
    out_dtype = m_arr.dtype
    m = volume_to_sitk(moving, np.float32)
    f = volume_to_sitk(fixed.with_array(np.zeros(fixed.array.shape[:3], np.uint8)) if np.asarray(fixed.array).ndim == 3
                       else fixed, np.uint8)
    tx = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    fill = _fill_value(moving) if default_value is None else float(default_value)
    res = sitk.Resample(m, f, tx, interp[interpolation], fill, sitk.sitkFloat32)
    out = sitk_to_volume(res, moving.modality, dict(moving.meta))
    arr = out.array
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        arr = np.clip(np.round(arr), info.min, info.max).astype(out_dtype)
    # The output lives on the fixed grid: use the fixed affine exactly (no float round trip).
    return Volume(arr, fixed.affine.copy(), moving.modality, {**moving.meta, "resampled_to": fixed.meta.get("path")})


def register(
    fixed: Volume,
    moving: Volume,
    transform: str = "rigid",
    *,
    iterations: int = 200,
    bins: int = 32,
    sampling: float = 0.25,
    levels: tuple[int, ...] = (4, 2, 1),
    seed: int = 0,
    bspline_mesh: int = 6,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` and resample it onto the fixed grid.

    Mattes mutual information (``bins`` histogram bins, random ``sampling`` fraction with a fixed
    ``seed`` so runs are reproducible), regular-step gradient descent, a multi-resolution pyramid
    with shrink factors ``levels`` and smoothing sigmas ``levels/2`` voxels. ``rigid`` and ``affine``
    start from a geometry-centred initialisation; ``bspline`` refines a rigid pre-alignment.
    """
    import SimpleITK as sitk  # noqa: N813

    if transform not in TRANSFORMS:
        raise ConfigError(f"unknown transform '{transform}'", f"use one of: {', '.join(TRANSFORMS)}")
    for name, v in (("fixed", fixed), ("moving", moving)):
        if np.asarray(v.array).ndim != 3 or min(v.shape[:3]) < 4:
            raise GeometryError(f"the {name} image has shape {v.shape}", "registration needs 3-D volumes of at least 4 voxels a side")
    f = volume_to_sitk(fixed, np.float32)
    m = volume_to_sitk(moving, np.float32)
    # Shrink factors cannot exceed the smallest dimension.
    smallest = min(min(fixed.shape[:3]), min(moving.shape[:3]))
    lv = [max(1, min(s, smallest // 4)) for s in levels] or [1]
    # ITK reads seed 0 as "seed from the wall clock" (sitkWallClock): shift so every seed is fixed.
    itk_seed = seed % (2**31 - 1) + 1

    def run(initial: Any, opt_iters: int) -> tuple[Any, Any]:
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(sampling, itk_seed)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=1.0, minStep=1e-4, numberOfIterations=opt_iters, relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-8)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(lv)
        reg.SetSmoothingSigmasPerLevel([s / 2.0 for s in lv])
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        reg.SetInitialTransform(initial, inPlace=False)
        out = reg.Execute(f, m)
        return out, reg

    init = sitk.CenteredTransformInitializer(
        f, m, sitk.Euler3DTransform() if transform != "affine" else sitk.AffineTransform(3),
        sitk.CenteredTransformInitializerFilter.GEOMETRY)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    # The metric, its interpolator and the pyramid filters take the global default, not the method's own.
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(REGISTRATION_THREADS)
    try:
        tx, reg = run(init, iterations)
        if transform == "bspline":
            mesh = [bspline_mesh] * 3
            bs = sitk.BSplineTransformInitializer(f, mesh)
            composite = sitk.CompositeTransform(3)
            composite.AddTransform(tx)
            reg2 = sitk.ImageRegistrationMethod()
            reg2.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
            reg2.SetMetricSamplingStrategy(reg2.RANDOM)
            reg2.SetMetricSamplingPercentage(sampling, itk_seed)
            reg2.SetInterpolator(sitk.sitkLinear)
            reg2.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=max(10, iterations // 2),
                                      maximumNumberOfCorrections=5,
                                      maximumNumberOfFunctionEvaluations=max(40, 2 * iterations))
            reg2.SetShrinkFactorsPerLevel(lv)
            reg2.SetSmoothingSigmasPerLevel([s / 2.0 for s in lv])
            reg2.SetMovingInitialTransform(tx)
            reg2.SetInitialTransform(bs, inPlace=True)
            reg2.Execute(f, m)
            composite.AddTransform(bs)
            tx, reg = composite, reg2
    except RuntimeError as exc:
        raise GeometryError(f"registration failed: {' '.join(str(exc).split())[-200:]}",
                            "check that the images overlap and show the same anatomy") from exc
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    resampled = resample_to(moving, fixed, tx)
    return RegistrationResult(resampled, float(reg.GetMetricValue()), tx,
                              int(reg.GetOptimizerIteration()), str(reg.GetOptimizerStopConditionDescription()))
