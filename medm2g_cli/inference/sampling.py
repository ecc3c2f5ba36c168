"""Which sampler settings a run uses: command-line flags, else the model's own, else the preset's.

A model folder may recommend sampler settings in its ``medm2g.json``, as a ``sampling`` block::

    "sampling": {"note": "chosen by bench figure 8 on held-out phantoms",
                 "branches": {"ct": {"sampler": "dpm++", "steps": 5},
                              "mri": {"sampler": "ddim", "steps": 10, "guidance_stop": 0.5}}}

Settings at the top of the block apply to every output; those under ``branches`` to outputs of
that modality only (and win over the top), since settings tuned on one branch need not suit
another; a branch with neither keeps the defaults. ``note`` is free text. (``medm2g.json`` is not
in its own sha256 list, so adding the block keeps ``weights verify`` passing.) Each setting is
resolved on its own: an explicit flag wins, then the model's block, then the defaults of
:class:`~medm2g_cli.config.SampleConfig` (Table A3: DDIM, 50 steps, eta 1, guidance 2 — what the
``full`` preset and every model without a block use). The block is a package tuned together:
naming a sampler (``--sampler``) opts out of all of it, so ``--sampler ddim --steps 50 --eta 1``
is Table A3's DDIM-50 on every model, while ``--steps 20`` alone keeps the model's sampler. The
run report records the settings used and where each came from (``flag``, ``model`` or ``preset``).
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
    """The model's recommended settings for outputs of ``target`` (``{}`` when it has none).

    Every part of the block is checked whatever ``target`` is: keys other than :data:`KEYS`
    (plus ``note`` and ``branches`` at the top), wrong types or out-of-range values raise
    :class:`WeightsError` naming the file, before any model is loaded.
    """
    from .. import modalities

    block = meta.get("sampling")
    if block is None:
        return {}
    hint = "fix or remove the 'sampling' block of medm2g.json (setting keys: " + ", ".join(KEYS) + ")"
    top = _settings(block, "sampling", where, hint, {"note", "branches"})
    branches = block.get("branches") or {}
    if not isinstance(branches, dict):
        raise WeightsError(f"'sampling.branches' in {where} is not a mapping of modality -> settings", hint)
    per = {str(m): {**top, **_settings(b, f"sampling.branches.{m}", where, hint, {"note"})} for m, b in branches.items()}
    if target is None:
        return top
    return per.get(modalities.split_target(target)[0], top)


def _settings(block: Any, name: str, where: str, hint: str, extra: set[str]) -> dict[str, Any]:
    from ..config import SampleConfig

    if not isinstance(block, dict):
        raise WeightsError(f"'{name}' in {where} is not a mapping", hint)
    unknown = sorted(set(block) - set(KEYS) - extra)
    if unknown:
        raise WeightsError(f"unknown key(s) in '{name}' of {where}: {', '.join(unknown)}", hint)
    out = {k: block[k] for k in KEYS if k in block}
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, _TYPES[k]):
            raise WeightsError(f"'{name}.{k}' in {where} has the wrong type ({type(v).__name__})", hint)
    try:
        SampleConfig(**out).validate()
    except ConfigError as exc:
        raise WeightsError(f"'{name}' in {where} is invalid: {exc.message}", hint) from exc
    return out


def resolve(flags: Mapping[str, Any], model: Mapping[str, Any] | None = None, seed: int = 0
            ) -> tuple[Any, dict[str, str]]:
    """(validated SampleConfig, origin of each setting) from ``flags`` (None = not given) and a
    model's :func:`model_sampling` block; see the module docstring for the order."""
    from ..config import SampleConfig

    # A sampler named by flag starts from Table A3: the block was tuned as a whole for its sampler.
    model = {} if flags.get("sampler") is not None else dict(model or {})
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
