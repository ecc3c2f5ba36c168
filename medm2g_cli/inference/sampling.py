"""Which sampler settings a run uses: command-line flags, else the model's own, else the preset's.

A model folder may recommend sampler settings in its ``medm2g.json``, as a ``sampling`` block::

    "sampling": {"sampler": "dpm++", "steps": 10, "guidance": 2.0, "guidance_stop": 0.5,
                 "spacing": "karras", "branches": ["ct", "mri"],
                 "note": "chosen by bench figure 8 on held-out phantoms"}

(``medm2g.json`` is not in its own sha256 list, so adding the block keeps ``weights verify``
passing.) ``branches`` (optional) limits the block to outputs of those modalities, since settings
tuned on one branch need not suit another; ``note`` is free text. Each setting is resolved on its own: an explicit flag wins, then the model's block, then
the defaults of :class:`~medm2g_cli.config.SampleConfig` (Table A3: DDIM, 50 steps, eta 1,
guidance 2 — what the ``full`` preset and every model without a block use). The block is a
package tuned for its sampler: a ``--sampler`` other than the block's opts out of the whole block,
so ``--sampler ddim --steps 50 --eta 1`` is Table A3's DDIM-50 on every model. The run report
records the settings used and where each came from (``flag``, ``model`` or ``preset``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, WeightsError

KEYS = ("sampler", "steps", "eta", "guidance", "guidance_stop", "spacing")
"""The :class:`SampleConfig` fields a model's ``sampling`` block (or a flag) may set."""

_TYPES: dict[str, tuple[type, ...]] = {"sampler": (str,), "steps": (int,), "eta": (int, float),
                                       "guidance": (int, float), "guidance_stop": (int, float),
                                       "spacing": (str,)}


def model_sampling(meta: Mapping[str, Any], where: str = "medm2g.json", target: str | None = None
                   ) -> dict[str, Any]:
    """The validated ``sampling`` block of a model's metadata (``{}`` when it has none, or when
    ``target``'s modality is not in the block's ``branches``).

    Keys other than :data:`KEYS`, ``branches`` and ``note``, wrong types or out-of-range values
    raise :class:`WeightsError` naming the file, before any model is loaded.
    """
    from .. import modalities
    from ..config import SampleConfig

    block = meta.get("sampling")
    if block is None:
        return {}
    hint = "fix or remove the 'sampling' block of medm2g.json (keys: " + ", ".join(KEYS) + ")"
    if not isinstance(block, dict):
        raise WeightsError(f"'sampling' in {where} is not a mapping", hint)
    unknown = sorted(set(block) - set(KEYS) - {"note", "branches"})
    if unknown:
        raise WeightsError(f"unknown key(s) in the 'sampling' block of {where}: {', '.join(unknown)}", hint)
    branches = block.get("branches")
    if branches is not None and (not isinstance(branches, list) or not all(isinstance(b, str) for b in branches)):
        raise WeightsError(f"'sampling.branches' in {where} is not a list of modality names", hint)
    out = {k: block[k] for k in KEYS if k in block}
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, _TYPES[k]):
            raise WeightsError(f"'sampling.{k}' in {where} has the wrong type ({type(v).__name__})", hint)
    try:
        SampleConfig(**out).validate()
    except ConfigError as exc:
        raise WeightsError(f"the 'sampling' block of {where} is invalid: {exc.message}", hint) from exc
    if target is not None and branches is not None and modalities.split_target(target)[0] not in branches:
        return {}
    return out


def resolve(flags: Mapping[str, Any], model: Mapping[str, Any] | None = None, seed: int = 0
            ) -> tuple[Any, dict[str, str]]:
    """(validated SampleConfig, origin of each setting) from ``flags`` (None = not given) and a
    model's :func:`model_sampling` block; see the module docstring for the order."""
    from ..config import SampleConfig

    model = dict(model or {})
    if flags.get("sampler") is not None and flags["sampler"] != model.get("sampler", "ddim"):
        model = {}  # another sampler than the one the block was tuned for: the block does not apply
    defaults = SampleConfig()
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for k in KEYS:
        if flags.get(k) is not None:
            values[k], origin[k] = flags[k], "flag"
        elif k in model:
            values[k], origin[k] = model[k], "model"
        else:
            values[k], origin[k] = getattr(defaults, k), "preset"
    cfg = SampleConfig(seed=seed, **values)  # type: ignore[arg-type]
    return cfg.validate(), origin


def as_dict(cfg: Any) -> dict[str, Any]:
    """The :data:`KEYS` of a SampleConfig as a plain dict (for reports and benchmarks)."""
    d = dataclasses.asdict(cfg)
    return {k: d[k] for k in KEYS}
