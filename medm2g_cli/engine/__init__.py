"""The MedM2G engine: components, the any-to-any model, sampling, and model folders.

Public API::

    from medm2g_cli.engine import MedM2G, Condition, SampleConfig, ModelConfig, model_preset
    from medm2g_cli.engine import generate, generate_joint
    model = MedM2G.from_preset("tiny")                     # or from_pretrained(DIR) / from_config(cfg)
    img = generate(model, "xray", [Condition("text", ["No acute findings."])], num_samples=2)
    rep = generate(model, "text", [Condition("xray", img)])
    pd = generate(model, "pd", [Condition("t1", t1, 0.5), Condition("t2", t2, 0.5)])
    both = generate_joint(model, ("xray", "text"), [Condition("text", ["..."])])
    model.save_pretrained(DIR)

Layers (imports flow one way): ``builder`` (fresh components) and ``io`` (model folders) below
``model`` (the ``nn.Module`` and its save/load), ``sampling`` / ``pretrained`` / ``merge`` above it.
"""

from __future__ import annotations

from ..config import PRESETS, ModelConfig, SampleConfig, model_preset
from .autoencoder import adapt_rgb_autoencoder, compute_scale_factor
from .encoders import mix_conditions
from .io import describe, parameter_counts, read_meta, save_model, sha256_file, verify_folder
from .model import Condition, MedM2G
from .pretrained import init_from_pretrained
from .sampling import generate, generate_joint
from .schedulers import ddim_scheduler, ddim_step, dpm_scheduler, training_scheduler

__all__ = [
    "PRESETS",
    "Condition",
    "MedM2G",
    "ModelConfig",
    "SampleConfig",
    "adapt_rgb_autoencoder",
    "compute_scale_factor",
    "ddim_scheduler",
    "ddim_step",
    "describe",
    "dpm_scheduler",
    "generate",
    "generate_joint",
    "init_from_pretrained",
    "mix_conditions",
    "model_preset",
    "parameter_counts",
    "read_meta",
    "save_model",
    "sha256_file",
    "training_scheduler",
    "verify_folder",
]
