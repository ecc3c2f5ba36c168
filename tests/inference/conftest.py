"""Fixtures of the inference tests: tiny random-weight model folders saved once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with every branch (text, xray, ct, mri), saved as a model folder."""
    import torch

    from medm2g_cli.engine import MedM2G

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("weights") / "tiny"
    MedM2G.from_preset("tiny", seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def text_xray_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with only the text and xray branches (no ct, no mri)."""
    from medm2g_cli.engine import MedM2G

    path = tmp_path_factory.mktemp("weights") / "text-xray"
    MedM2G.from_preset("tiny", seed=0, modalities=("text", "xray")).save_pretrained(path)
    return path


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the model is loaded (errors must come before any model work)."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("medm2g_cli.api.session.load_model", boom)
