"""All-background slices: found before sampling, written as the background value, never modelled.

A head volume has slices of air only above the vertex and below the chin (about a tenth of the
slices of the phantom head at 1 or 2 mm). Running the model on them costs as much as on a brain
slice and can only add noise to air, so :func:`background_slices` marks a slice as background
when *no* voxel of *any* source reaches ``fraction`` of that source's intensity window (its
normalisation: the HU window for CT, the 0.5-99.5 percentiles for MRI). The noise floor of an
MRI (Rician noise in air) stays well below 10 % of the window; a slice with any tissue has voxels
far above it (the phantom's last slice with head voxels reaches 66 %).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

BACKGROUND_FRACTION = 0.1
"""A slice is background when every voxel of every source is below this fraction of its window."""

CT_AIR_HU = -1000.0
"""Background value of a CT output: air, by the definition of the Hounsfield scale."""


def background_slices(stacks: Sequence[np.ndarray], norms: Sequence[Any],
                      fraction: float = BACKGROUND_FRACTION, chunk: int = 16) -> np.ndarray:
    """Bool [n]: slice k of every ``stacks[i]`` ([n, h, w], physical units, any view) is below
    ``low + fraction * (high - low)`` of ``norms[i]`` everywhere. Read slab by slab (no
    full-volume temporary). ``fraction <= 0`` marks nothing."""
    n = stacks[0].shape[0]
    skip = np.zeros(n, dtype=bool)
    if fraction <= 0:
        return skip
    for i in range(0, n, chunk):
        below = np.ones(min(chunk, n - i), dtype=bool)
        for stack, norm in zip(stacks, norms, strict=True):
            thr = norm.low + fraction * (norm.high - norm.low)
            below &= np.asarray(stack[i:i + chunk]).max(axis=(1, 2)) < thr
        skip[i:i + chunk] = below
    return skip


def background_value(norm: Any) -> float:
    """The value written into background slices of an output mapped back by ``norm``: air
    (-1000 HU) for CT, the bottom of the intensity window (the input's 0.5th percentile) for MRI."""
    if norm.modality == "ct":
        return CT_AIR_HU
    return float(norm.low)


def foreground_batches(skip: np.ndarray, batch_size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of consecutive non-background slices, at most ``batch_size`` long.

    Batches never span a skipped slice, so slice k keeps its noise seeds (``seed + k * K``) and
    the outputs of modelled slices are those of a run that skips nothing.
    """
    n = len(skip)
    k = 0
    while k < n:
        if skip[k]:
            k += 1
            continue
        stop = k
        while stop < n and not skip[stop] and stop - k < batch_size:
            stop += 1
        yield k, stop
        k = stop
