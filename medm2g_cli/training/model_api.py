"""What the training stages need from a model, in one place.

The stages talk to the model only through :class:`TrainableModel`. The engine's ``MedM2G``
provides these entry points (directly or through :func:`adapt`), so engine-internal changes stay
out of the stage code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

REQUIRED = (
    "image_size", "save_pretrained", "components", "trainable_parameters", "autoencoder_loss", "text_vae_loss",
    "encode_image", "encode_text", "embed_image", "embed_text", "diffusion_loss", "cross_guided_loss",
    "cross_guidance_parameters",
)


@runtime_checkable
class TrainableModel(Protocol):
    """The training surface of a MedM2G model (an ``nn.Module`` holding every component)."""

    image_size: int

    def parameters(self) -> Any: ...

    def save_pretrained(self, path: Path, overwrite: bool = False) -> None:
        """Write a model folder (replacing an existing one only with ``overwrite``)."""
        ...

    def components(self) -> dict[str, torch.nn.Module]:
        """Component name -> module (for the trainable/frozen report)."""
        ...

    def trainable_parameters(self, stage: str, modalities: Sequence[str]) -> dict[str, list[torch.nn.Parameter]]:
        """Per component, the parameters ``stage`` trains for ``modalities``."""
        ...

    def autoencoder_loss(self, images: torch.Tensor, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL) of the modality's autoencoder on images in [-1, 1]."""
        ...

    def text_vae_loss(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(token cross-entropy, KL) of the text VAE on reports."""
        ...

    def encode_image(self, images: torch.Tensor, modality: str, sample: bool = False) -> torch.Tensor:
        """Scaled latents of the frozen autoencoder (posterior mean unless ``sample``)."""
        ...

    def encode_text(self, texts: list[str], sample: bool = False) -> torch.Tensor:
        """Scaled text-VAE latents."""
        ...

    def embed_image(self, images: torch.Tensor, modality: str, normalize: bool = True) -> torch.Tensor:
        """Prompt-encoder embedding [N, D] in the shared space."""
        ...

    def embed_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """Text (centre) embedding [N, D]."""
        ...

    def diffusion_loss(self, target: str, x0: torch.Tensor, cond: torch.Tensor, cond_drop_prob: float = 0.1,
                       contrast: list[str] | None = None) -> torch.Tensor:
        """Epsilon loss of the target branch with condition dropout to the null condition."""
        ...

    def cross_guided_loss(self, a: tuple[str, torch.Tensor, Any], b: tuple[str, torch.Tensor, Any],
                          cond_drop_prob: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
        """Epsilon losses of both branches of a flow, each guided by the other's context."""
        ...

    def cross_guidance_parameters(self, modality: str) -> int:
        """Parameters the cross-guidance of ``modality`` adds (Table A8)."""
        ...


def adapt(model: Any) -> TrainableModel:
    """Return ``model`` checked against :class:`TrainableModel`; a missing entry point stops the run early."""
    missing = [n for n in REQUIRED if not hasattr(model, n)]
    if missing:
        from ..errors import ConfigError

        raise ConfigError(f"the model lacks training entry points: {', '.join(missing)}",
                          "update medm2g (engine and training versions differ)")
    return model
