"""Exponential moving average of the trainable parameters (``--ema``; the model folders hold it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class EMA:
    """Exponential moving average of the trainable parameters (shadow kept in fp32)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        self.params = params
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """shadow = d * shadow + (1 - d) * param, with the usual warm-up d = min(decay, (1+s)/(10+s))."""
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params, strict=True):
            s.mul_(d).add_(p.detach().float(), alpha=1 - d)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Load the averaged weights into the model for good (end of a phase)."""
        for s, p in zip(self.shadow, self.params, strict=True):
            p.copy_(s.to(p.dtype))

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Temporarily load the EMA weights into the model (to save or evaluate)."""
        backup = [p.detach().clone() for p in self.params]
        self.copy_to_params()
        try:
            yield
        finally:
            with torch.no_grad():
                for b, p in zip(backup, self.params, strict=True):
                    p.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to store in a checkpoint."""
        return {f"ema.{i}": s.contiguous() for i, s in enumerate(self.shadow)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the shadow weights from :meth:`state_dict`."""
        for i in range(len(self.shadow)):
            self.shadow[i] = state[f"ema.{i}"].float().clone()
