"""Inputs whose modality contradicts the direction are refused before any model work."""

from __future__ import annotations

import numpy as np
import pytest

from medm2g_cli.errors import ModalityError
from medm2g_cli.inference.modality_check import check_modality
from medm2g_cli.io.volume import Volume


def test_modality_checks() -> None:
    aff = np.eye(4)
    ct = Volume(np.full((4, 4, 4), -1000.0), aff)
    with pytest.raises(ModalityError, match="looks like a CT"):
        check_modality(ct, "mri")
    check_modality(ct, "ct")
    mr = Volume(np.random.default_rng(0).uniform(0, 900, (4, 4, 4)), aff)
    check_modality(mr, "t1")
    with pytest.raises(ModalityError, match="not a CT"):
        check_modality(mr, "ct")
    tagged = Volume(np.zeros((4, 4, 4)), aff, meta={"Modality": "CT"})
    with pytest.raises(ModalityError, match="DICOM Modality is CT"):
        check_modality(tagged, "mri")
