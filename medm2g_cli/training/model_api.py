"""What training needs from a model, in one place.

:class:`TrainableModel` lists every model member the training code calls: the stages
(:mod:`medm2g_cli.training.stages`) directly, the objectives (:mod:`medm2g_cli.training.objectives`)
and the stage rules (:mod:`medm2g_cli.training.trainable`), which are typed against it, so mypy
keeps this list and the callers in step. The engine's ``MedM2G`` satisfies it (checked by mypy
below); :func:`adapt` refuses a model built by a ``model_factory`` that lacks a member before any
data is read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..engine.model import MedM2G


class TrainableModel(Protocol):
    """The training surface of a MedM2G model (an ``nn.Module`` holding every component)."""

    config: ModelConfig
    train_scheduler: Any  # diffusers DDPMScheduler: add_noise, get_velocity

    @property
    def image_size(self) -> int:
        """Side of the square images the imaging branches were built for."""
        ...

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        ...

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """Every parameter (``nn.Module.parameters``)."""
        ...

    def save_pretrained(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write a model folder (replacing an existing one only with ``overwrite``)."""
        ...

    def components(self) -> dict[str, torch.nn.Module]:
        """Component name -> module (trainable/frozen split, stage rules)."""
        ...

    def component(self, name: str) -> torch.nn.Module:
        """One component by name."""
        ...

    def require_branch(self, modality: str) -> str:
        """The branch name of ``modality``; refuses a model without that branch."""
        ...

    def vae(self, mod: str) -> Any:
        """The autoencoder of imaging branch ``mod``."""
        ...

    def text_vae(self) -> Any:
        """The text VAE (``loss``)."""
        ...

    def encode_image(self, modality: str, x: torch.Tensor, sample: bool = False,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Scaled latents of the frozen autoencoder (posterior mean unless ``sample``)."""
        ...

    def encode_text(self, texts: list[str], sample: bool = False) -> torch.Tensor:
        """Scaled text-VAE latents."""
        ...

    def embed_image(self, modality: str, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Prompt-encoder embedding [N, D] in the shared space."""
        ...

    def embed_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """Text (centre) embedding [N, D]."""
        ...

    def uses_context(self, source: str, target: str) -> bool:
        """Whether a clean ``source`` image conditions ``target`` spatially."""
        ...

    def predicts_v(self, target: str) -> bool:
        """Whether branch ``target`` predicts v rather than epsilon."""
        ...

    def source_inputs(self, target: str, sources: Sequence[tuple[str, torch.Tensor]], like: torch.Tensor,
                      drop: torch.Tensor | None) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor | None]:
        """Context tokens or concat channels of clean sources."""
        ...

    def context_tokens(self, modality: str, latent: torch.Tensor, timestep: torch.Tensor | int = 0) -> torch.Tensor:
        """Context tokens of a (noisy) latent."""
        ...

    def prompt_tokens(self, target: str, prompt: torch.Tensor | None,
                      contrast: str | Sequence[str | None] | None = None,
                      context: Sequence[tuple[str, torch.Tensor]] = (), drop: torch.Tensor | None = None,
                      batch: int | None = None, null: torch.Tensor | None = None) -> torch.Tensor:
        """The cross-attention sequence of branch ``target`` (rows in ``drop`` nulled)."""
        ...

    def model_output(self, target: str, z_t: torch.Tensor, t: torch.Tensor | int, tokens: torch.Tensor,
                     concat: torch.Tensor | None = None) -> torch.Tensor:
        """Raw UNet output (epsilon or v)."""
        ...

    def predict_noise(self, target: str, z_t: torch.Tensor, t: torch.Tensor | int, tokens: torch.Tensor,
                      concat: torch.Tensor | None = None) -> torch.Tensor:
        """Epsilon of branch ``target``."""
        ...


REQUIRED = tuple(n for n in vars(TrainableModel) if not n.startswith("_")) + tuple(
    TrainableModel.__annotations__)
"""Every member of :class:`TrainableModel` (methods, properties and attributes)."""


def adapt(model: Any) -> TrainableModel:
    """Return ``model`` checked against :class:`TrainableModel`; a missing member stops the run early."""
    missing = [n for n in REQUIRED if not hasattr(model, n)]
    if missing:
        from ..errors import ConfigError

        raise ConfigError(f"the model lacks training entry points: {', '.join(missing)}",
                          "update medm2g (engine and training versions differ)")
    return model  # type: ignore[no-any-return]


if TYPE_CHECKING:
    def _medm2g_is_trainable(model: MedM2G) -> TrainableModel:
        return model  # mypy: MedM2G provides every member above
