"""`medm2g dicom-node` loads the model once: the ``translate_series`` callback shares one
:class:`ModelCache` across series, reloads when the weights folder changes, and gives exactly the
pixels of an uncached run. Real tiny weights, real DICOM series, the real ``load_model`` (counted
by a spy that calls through)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from net_helpers import dicom_series

from medm2g_cli.api.model_cache import ModelCache
from medm2g_cli.api.series import translate_series
from medm2g_cli.api.translate import translate_path
from medm2g_cli.errors import WeightsError
from medm2g_cli.inference import runtime
from medm2g_cli.inference.runtime import InferenceSettings

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every model load of the test (the weights folder of each), through the real ``load_model``."""
    seen: list[Path] = []

    def spy(weights: Path, *args: Any, **kwargs: Any) -> Any:
        seen.append(weights)
        return runtime.load_model(weights, *args, **kwargs)

    monkeypatch.setattr("medm2g_cli.api.session.load_model", spy)
    return seen


def _settings(weights: Path) -> InferenceSettings:
    return InferenceSettings(weights=weights, device="cpu", steps=2, batch_size=8, seed=3)


def _pixels(files: list[Path]) -> np.ndarray:
    import pydicom

    dss = sorted((pydicom.dcmread(f) for f in files if f.suffix == ".dcm"), key=lambda d: int(d.InstanceNumber))
    return np.stack([d.pixel_array for d in dss])


def _process(proc: Any, series: Path, out: Path) -> list[Path]:
    out.mkdir()
    return list(proc(series, out, lambda: None))


def _touch(path: Path) -> None:
    # a later mtime for sure, whatever the file system's timestamp granularity
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_node_loads_once_and_matches_an_uncached_run(tmp_path: Path, tiny_weights: Path, loads: list[Path]) -> None:
    lines: list[str] = []
    proc = translate_series("mri2ct", _settings(tiny_weights), log=lines.append)
    a = dicom_series(tmp_path / "a", "MR_small.dcm", n=5)
    b = dicom_series(tmp_path / "b", "MR_small.dcm", n=4, spacing=3.0)
    _process(proc, a, tmp_path / "out-a")
    second = _process(proc, b, tmp_path / "out-b")
    assert len(loads) == 1  # the second series reused the model
    assert any(ln.startswith("model loaded in") for ln in lines)
    assert "model reused (loaded once, weights folder unchanged)" in lines
    rep = translate_path("mri2ct", b, tmp_path / "fresh", settings=_settings(tiny_weights))  # no cache: loads
    assert len(loads) == 2
    assert "model_reused" not in rep.report["timings"]
    fresh = sorted(p for p in rep.cases[0].files[0].rglob("*.dcm"))
    mine, ref = _pixels(second), _pixels(fresh)
    assert mine.shape == ref.shape == (4, *ref.shape[1:])
    assert np.array_equal(mine, ref)


def test_changed_weights_folder_reloads_and_a_damaged_file_still_fails(tmp_path: Path, tiny_weights: Path,
                                                                        loads: list[Path]) -> None:
    w = tmp_path / "w"
    shutil.copytree(tiny_weights, w)
    proc = translate_series("mri2ct", _settings(w))
    series = dicom_series(tmp_path / "s", "MR_small.dcm", n=3)
    _process(proc, series, tmp_path / "o1")
    _process(proc, series, tmp_path / "o2")
    assert len(loads) == 1
    meta = w / "medm2g.json"
    meta.write_bytes(meta.read_bytes())  # same bytes, rewritten: the folder is not the one that was loaded
    _touch(meta)
    _process(proc, series, tmp_path / "o3")
    assert len(loads) == 2
    victim = sorted(w.rglob("*.safetensors"))[0]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size: only the sha256 check can tell
    victim.write_bytes(bytes(raw))
    _touch(victim)
    with pytest.raises(WeightsError) as cached:
        _process(proc, series, tmp_path / "o4")
    with pytest.raises(WeightsError) as again:  # a failed load is not cached: the next series fails the same way
        _process(proc, series, tmp_path / "o5")
    with pytest.raises(WeightsError) as uncached:
        translate_path("mri2ct", series, tmp_path / "o6", settings=_settings(w))
    assert cached.value.one_line() == again.value.one_line() == uncached.value.one_line()
    assert "\n" not in cached.value.one_line() and victim.name in cached.value.one_line()


def test_without_a_cache_every_call_loads(tmp_path: Path, tiny_weights: Path, loads: list[Path]) -> None:
    series = dicom_series(tmp_path / "s", "MR_small.dcm", n=3)
    reps = [translate_path("mri2ct", series, tmp_path / f"o{i}", settings=_settings(tiny_weights)) for i in range(2)]
    assert len(loads) == 2
    assert all("model_reused" not in r.report["timings"] and r.report["timings"]["load_s"] > 0 for r in reps)
    cache = ModelCache()
    reps = [translate_path("mri2ct", series, tmp_path / f"c{i}", settings=_settings(tiny_weights), cache=cache)
            for i in range(2)]
    assert len(loads) == 3 and cache.loads == 1
    assert [r.report["timings"]["model_reused"] for r in reps] == [False, True]


def test_other_settings_reload(tmp_path: Path, tiny_weights: Path, loads: list[Path]) -> None:
    series = dicom_series(tmp_path / "s", "MR_small.dcm", n=3)
    cache = ModelCache()
    for i, st in enumerate([_settings(tiny_weights), InferenceSettings(weights=tiny_weights, device="cpu", steps=2,
                                                                        batch_size=8, seed=3, precision="fp32")]):
        translate_path("mri2ct", series, tmp_path / f"o{i}", settings=st, cache=cache)
    assert len(loads) == 2 and cache.loads == 2


def test_a_reused_model_leaves_the_global_rng_where_a_fresh_load_does(tiny_weights: Path, loads: list[Path]) -> None:
    # Loading draws from torch's global RNG (module initialisation before the weights are read), so
    # anything that samples from it after the load must see the same state with a reused model.
    import torch

    from medm2g_cli.api.session import Session

    cache = ModelCache()
    drawn = []
    for c in (None, cache, cache):  # fresh, fresh into the cache, reused
        Session.open(_settings(tiny_weights), ["mri", "ct"], cache=c).load()
        drawn.append(torch.rand(8))
    assert len(loads) == 2 and cache.loads == 1
    assert torch.equal(drawn[0], drawn[1]) and torch.equal(drawn[0], drawn[2])
