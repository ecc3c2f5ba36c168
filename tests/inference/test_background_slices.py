"""All-background slices (issue 20): written as exactly the background value, the model never run on
them, and the other slices unchanged (same per-slice seeds). Tiny random-weight model, 2 steps."""

from __future__ import annotations

import numpy as np
import pytest

from medm2g_cli.config import SampleConfig
from medm2g_cli.data.transforms import Normalisation
from medm2g_cli.inference.background import background_slices, foreground_batches
from medm2g_cli.inference.pipeline import Source, translate_sources
from medm2g_cli.inference.stages import stage_timer
from medm2g_cli.io.volume import Volume

TISSUE = [1, 2, 4]  # the other slices of the 6 hold only a noise floor (at most 4 % of the window)


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    import torch

    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    return MedM2G.from_preset("tiny", seed=0, modalities=("ct", "mri")).eval()


def _mri() -> Volume:
    rng = np.random.default_rng(0)
    arr = rng.uniform(0, 40, (24, 20, 6)).astype(np.float32)  # Rician-like noise floor in air
    for k in TISSUE:
        arr[4:20, 3:17, k] += rng.uniform(300, 1000, (16, 14)).astype(np.float32)
    return Volume(arr, np.eye(4), modality="mri")


def test_background_slices_exact_and_not_modelled(model) -> None:  # type: ignore[no-untyped-def]
    vol, sample = _mri(), SampleConfig(steps=2, seed=4)
    with stage_timer(model) as st:
        r = translate_sources(model, [Source("mri", vol)], "ct", sample=sample, samples=2, batch_size=4)
    bg = [k for k in range(6) if k not in TISSUE]
    assert r.background_slices == 3
    assert (r.mean.array[:, :, bg] == -1000.0).all()  # air, exactly
    assert r.std is not None and (r.std.array[:, :, bg] == 0.0).all()
    # the UNet saw only the tissue slices: 2 steps x 2 guidance rows x 2 samples x 3 slices
    assert st.unet_rows == 2 * 2 * 2 * len(TISSUE)
    full = translate_sources(model, [Source("mri", vol)], "ct", sample=sample, samples=2, batch_size=4,
                             background_fraction=0)
    assert full.background_slices == 0 and not (full.mean.array[:, :, bg] == -1000.0).all()
    # modelled slices keep their seeds: the same values as when nothing is skipped
    np.testing.assert_allclose(r.mean.array[:, :, TISSUE], full.mean.array[:, :, TISSUE], atol=0.05)


def test_mri_output_background_is_the_window_floor(model) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    ct = np.full((20, 20, 3), -1000.0, np.float32) + rng.uniform(-20, 20, (20, 20, 3)).astype(np.float32)
    ct[5:15, 5:15, 1] = rng.uniform(0, 1500, (10, 10))
    r = translate_sources(model, [Source("ct", Volume(ct, np.eye(4), modality="ct"))], "mri",
                          sample=SampleConfig(steps=1), batch_size=2)
    assert r.background_slices == 2
    low = r.normalisation["output"]["low"]
    assert (r.mean.array[:, :, [0, 2]] == np.float32(low)).all()


def test_helpers() -> None:
    stack = np.zeros((5, 4, 4), np.float32)
    stack[[1, 3]] = 50.0  # 50 % of the window
    norm = Normalisation("mri", 0.0, 100.0)
    skip = background_slices([stack], [norm])
    assert skip.tolist() == [True, False, True, False, True]
    assert background_slices([stack], [norm], fraction=0).tolist() == [False] * 5
    # a second source with tissue where the first has none keeps the slice
    other = np.zeros_like(stack)
    other[0] = 80.0
    assert background_slices([stack, other], [norm, norm]).tolist() == [False, False, True, False, True]
    skip = np.array([False, False, False, True, False, False, False, False])
    assert list(foreground_batches(skip, 2)) == [(0, 2), (2, 3), (4, 6), (6, 8)]
