"""Dataset adapters: one module per public dataset, all producing the prepared format of
:mod:`medm2g_cli.data.manifest` through :func:`~.base.run_prepare`."""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import ConfigError

# CLI name -> module (in the order `medm2g prepare --help` lists them)
ADAPTERS: dict[str, str] = {
    "ixi": "ixi",
    "brats2020": "brats",
    "gold-atlas-pelvis": "gold_atlas",
    "mimic-cxr": "mimic_cxr",
    "iu-xray": "iu_xray",
    "chestxray14": "chestxray14",
    "sliver07": "sliver07",
    "acdc": "acdc",
    "medicat": "medicat",
    "brain-mri-ct": "brain_mri_ct",
    "phantom": "phantom",
}


def get_adapter(name: str) -> Any:
    """The adapter module for a dataset name (see :data:`ADAPTERS`)."""
    key = name.strip().lower()
    if key not in ADAPTERS:
        raise ConfigError(f"unknown dataset '{name}'", f"choose one of: {', '.join(ADAPTERS)}")
    return importlib.import_module(f"{__name__}.{ADAPTERS[key]}")
