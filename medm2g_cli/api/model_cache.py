"""An explicit, opt-in cache of one loaded model for long-running callers (``medm2g dicom-node``).

Loading the model is a large share of a short translation (about 4 s of 18 s for the demo model),
so a node that translates many series loads it once. Nothing caches by default: a
:class:`ModelCache` is created by the caller and passed to
:func:`medm2g_cli.api.translate_path` / :meth:`medm2g_cli.api.session.Session.open`; without one
every run loads (and verifies) the model afresh, as before.

A cached model is reused only when everything that shaped it is unchanged: the resolved weights
folder, the device, precision, ``compile``, ``channels_last``, ``verify``, the seed (see below)
and a fingerprint of the folder's files (relative path, size, mtime_ns of each). Any file that
changes between runs makes the next run load, and with ``verify`` check, the folder again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..inference.runtime import InferenceSettings

Fingerprint = tuple[tuple[str, int, int], ...]


def folder_fingerprint(folder: Path) -> Fingerprint:
    """(relative path, size, mtime_ns) of every file under ``folder``, sorted: cheap (no reads), and
    any rewrite, truncation or replacement of a file changes it."""
    out = []
    for p in folder.rglob("*"):
        if p.is_file():
            st = p.stat()
            out.append((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


def model_key(weights: Path, device: Any, settings: InferenceSettings) -> tuple[Any, ...]:
    """What a loaded model depends on (the arguments of :func:`~medm2g_cli.inference.runtime.load_model`
    plus the folder's fingerprint). The seed is part of it because the global RNG state a fresh load
    leaves behind depends on it, and a reused model must leave exactly that state (see :class:`ModelCache`)."""
    return (str(weights.resolve()), str(device), settings.precision, settings.compile, settings.channels_last,
            settings.verify, settings.seed, folder_fingerprint(weights))


def _rng_state(device: Any) -> tuple[Any, Any]:
    import torch

    kind = getattr(device, "type", str(device))
    dev = torch.cuda.get_rng_state_all() if kind == "cuda" else None
    return torch.get_rng_state(), dev


def _set_rng_state(state: tuple[Any, Any]) -> None:
    import torch

    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


@dataclass
class _Entry:
    key: tuple[Any, ...]
    model: Any
    rng: tuple[Any, Any]  # the global RNG state right after the fresh load


class ModelCache:
    """Holds at most one loaded model (a node serves one model) and hands it back while its key holds.

    A fresh load runs after ``torch.manual_seed(seed)`` and leaves the global RNG in some state; a
    reuse restores that very state, so a run with a reused model draws exactly the numbers a run
    that loaded the model would (same seed, same outputs). Thread-safe; ``loads`` counts fresh loads.
    """

    def __init__(self) -> None:
        self._entry: _Entry | None = None
        self._lock = threading.Lock()
        self.loads = 0

    def load(self, weights: Path, device: Any, settings: InferenceSettings,
             loader: Callable[[], Any]) -> tuple[Any, bool]:
        """(model, reused): the cached model if its key still holds, else ``loader()`` (cached on success).

        The fingerprint is taken before loading, so a file changed during the load is noticed next time;
        a failed load leaves the cache empty, so the next run loads (and fails or succeeds) again."""
        key = model_key(weights, device, settings)  # before the load: see the docstring
        with self._lock:
            if self._entry is not None and self._entry.key == key:
                _set_rng_state(self._entry.rng)
                return self._entry.model, True
            self._entry = None  # drop the old model before loading another: one model in memory at most
            model = loader()
            self.loads += 1
            self._entry = _Entry(key, model, _rng_state(device))
            return model, False

    def clear(self) -> None:
        """Forget the cached model."""
        with self._lock:
            self._entry = None
