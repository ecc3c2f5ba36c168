"""Per-stage wall-time breakdown of a translation (issue 20: "where do the seconds go").

:func:`stage_timer` wraps, for the duration of a ``with`` block, the model methods and slice
helpers that make up one translation, and adds up their wall time by stage:

- ``encode``: the source autoencoder (``encode_image``), once per slice batch;
- ``conditioning``: pooled embeddings and context/prompt tokens (image encoder, conditioner);
- ``unet``: every denoiser evaluation (``model_output``), with the number of calls and of rows
  (one row = one latent through the UNet; guidance doubles the rows of a call);
- ``decode``: the target autoencoder's decoder (``decode_image``);
- ``slices``: normalisation, padding/resizing of slices to the model size and back
  (:class:`~medm2g_cli.data.transforms.SliceGeometry`, :class:`Normalisation`).

What is left of the total (sampler arithmetic, noise draws, tensor copies, Python) is reported
by the caller as ``other``. Nested calls are counted once, in the outermost stage. The wrappers
only time, they do not change any value, so a timed run gives the same outputs as an untimed one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_MODEL_STAGES = {
    "encode_image": "encode",
    "embed_condition": "conditioning",
    "context_tokens": "conditioning",
    "prompt_tokens": "conditioning",
    "null_tokens_like": "conditioning",
    "model_output": "unet",
    "decode_image": "decode",
}


@dataclass
class StageTimes:
    """Accumulated seconds per stage, UNet calls and UNet rows."""

    seconds: dict[str, float] = field(default_factory=dict)
    unet_calls: int = 0
    unet_rows: int = 0
    _depth: int = 0

    def as_dict(self, total_s: float | None = None) -> dict[str, Any]:
        """JSON-ready breakdown; with ``total_s`` also ``other`` (the rest) and shares of the total."""
        out: dict[str, Any] = {k: round(v, 4) for k, v in sorted(self.seconds.items())}
        out["unet_calls"], out["unet_rows"] = self.unet_calls, self.unet_rows
        if total_s is not None:
            known = sum(self.seconds.values())
            out["other"] = round(max(total_s - known, 0.0), 4)
            out["total"] = round(total_s, 4)
            out["share"] = {k: round(v / total_s, 3) for k, v in {**self.seconds, "other": out["other"]}.items()
                            } if total_s > 0 else {}
        return out


def _wrap(fn: Callable[..., Any], stage: str, times: StageTimes, count_rows: bool = False) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        if times._depth:  # nested: the outer stage already counts this time
            return fn(*args, **kwargs)
        times._depth += 1
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times._depth -= 1
            times.seconds[stage] = times.seconds.get(stage, 0.0) + time.perf_counter() - t
            if count_rows:
                times.unet_calls += 1
                z = args[1] if len(args) > 1 else kwargs.get("z_t")
                times.unet_rows += int(getattr(z, "shape", [1])[0])
    return timed


@contextmanager
def stage_timer(model: Any) -> Iterator[StageTimes]:
    """Time the stages of translations run on ``model`` inside the block (see the module docstring)."""
    from ..data import transforms

    times = StageTimes()
    patched: list[tuple[Any, str, Any, bool]] = []  # (owner, name, original, was an instance attribute)
    for name, stage in _MODEL_STAGES.items():
        orig = getattr(model, name)
        patched.append((model, name, orig, name in vars(model)))
        setattr(model, name, _wrap(orig, stage, times, count_rows=stage == "unet"))
    for cls, name in ((transforms.SliceGeometry, "to_model"), (transforms.SliceGeometry, "from_model"),
                      (transforms.Normalisation, "forward"), (transforms.Normalisation, "inverse")):
        orig = vars(cls)[name]
        patched.append((cls, name, orig, True))
        setattr(cls, name, _wrap(orig, "slices", times))
    try:
        yield times
    finally:
        for owner, name, orig, had in reversed(patched):
            if had:
                setattr(owner, name, orig)
            else:
                delattr(owner, name)
