"""The processing step of ``medm2g dicom-node``: translate one received DICOM series with the
``translate`` API and return the derived DICOM files to forward.

Each series runs through :func:`medm2g_cli.api.translate_path` (this module sits in
``api/`` because it runs the API; ``inference/`` stays below it), so the node writes
exactly what ``medm2g translate SERIES_DIR -o OUT`` writes (derived series in the source study,
SyntheticData YES, run report). The model is loaded for the first series and reused for the next
ones through one :class:`~medm2g_cli.api.model_cache.ModelCache`, which loads (and verifies) it again
when a file of the weights folder changes. Stopping is checked between slice batches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..inference.runtime import InferenceSettings, Log


def translate_series(direction: str, settings: InferenceSettings, *, samples: int = 1, axis: str = "axial",
                     log: Log | None = None) -> Callable[[Path, Path, Callable[[], None]], list[Path]]:
    """A node ``process(series_dir, out_dir, check_stop)`` callback running ``translate DIRECTION``
    (one model, loaded by the first series and reused while the weights folder is unchanged)."""
    from .model_cache import ModelCache

    cache = ModelCache()
    say = log or (lambda _: None)

    def process(series_dir: Path, out_dir: Path, check_stop: Callable[[], None]) -> list[Path]:
        from .translate import translate_path

        def progress(done: int, total: int) -> None:
            check_stop()  # raises NodeStopping between batches: the series is dropped, never half-sent

        check_stop()
        rep = translate_path(direction, series_dir, out_dir / "derived", settings=settings, samples=samples,
                             axis=axis, log=say, progress=progress, cache=cache)
        t = rep.report["timings"]
        say("model reused (loaded once, weights folder unchanged)" if t.get("model_reused")
            else f"model loaded in {t.get('load_s', 0):.1f} s (kept for the next series)")
        files: list[Path] = []
        for case in rep.cases:
            for f in case.files:
                if f.is_dir():  # DICOM series folders (the mean, and the std map with samples > 1)
                    files += sorted(p for p in f.rglob("*") if p.is_file() and not p.name.startswith("."))  # not .medm2g
                elif f.suffix.lower() == ".dcm":  # a single-file DICOM output (e.g. a parametric map)
                    files.append(f)
        return files

    return process
