"""Fixtures of the DICOM networking tests: real pynetdicom Storage SCPs on loopback ports, and the
tiny random-weight model of the inference tests (the same fixture, loaded from their conftest)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from net_helpers import StoreSCP

_spec = importlib.util.spec_from_file_location("_inference_conftest", Path(__file__).parents[1] / "inference" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_inference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_inference)
tiny_weights = _inference.tiny_weights


@pytest.fixture
def scp():
    """A started Storage SCP factory: ``scp(ae_title="STORE", refuse=())``; all are stopped at the end."""
    started: list[StoreSCP] = []

    def make(ae_title: str = "STORE", refuse: tuple[str, ...] = ()) -> StoreSCP:
        s = StoreSCP(ae_title, refuse)
        s.start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
