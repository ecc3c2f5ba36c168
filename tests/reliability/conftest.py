"""Fixtures of the reliability tests: one tiny random-weight model folder per session, and small inputs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def rel_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with every branch (text, xray, ct, mri), saved as a model folder (safetensors + sha256)."""
    import torch

    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("relweights") / "tiny"
    MedM2G.from_preset("tiny", seed=0).save_pretrained(path)
    return path
