"""Inference plumbing: volume -> canonical -> normalised slices -> engine -> back on the input grid.

:mod:`.runtime` holds device/precision/batch-size selection, weights resolution and branch checks;
:mod:`.pipeline` the slice-wise translation of volumes; :mod:`.provenance` the run report.
Everything here may import torch; :mod:`medm2g_cli.api` wraps it for the commands.
"""
