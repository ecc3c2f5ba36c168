"""Grey-level augmentations for the visual-invariance loss (method.md section 1.3).

Barlow Twins' colour jitter, grayscale and solarisation make no sense on single-channel medical
images, so two views are made with: random resized crop, horizontal flip, brightness/contrast,
Gaussian blur (asymmetric probabilities as in Barlow Twins: 1.0 for view A, 0.1 for view B) and
additive Gaussian noise. Everything is batched torch on the tensor's device, driven by an explicit
``torch.Generator`` so runs are reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the grey-level augmentations."""

    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    jitter_p: float = 0.8
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_std: float = 0.05
    noise_p: float = 0.5


VIEW_A = AugmentConfig()
VIEW_B = AugmentConfig(blur_p=0.1)


def _rand(n: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen).to(device)


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float], gen: torch.Generator | None = None) -> torch.Tensor:
    """Crop a random area fraction in ``scale`` (aspect 3/4..4/3) from each image and resize back."""
    n, _, h, w = x.shape
    area = _rand(n, gen, x.device) * (scale[1] - scale[0]) + scale[0]
    log_ratio = (_rand(n, gen, x.device) * 2 - 1) * torch.log(torch.tensor(4.0 / 3.0))
    ratio = torch.exp(log_ratio)
    sw = torch.sqrt(area * ratio).clamp(max=1.0)
    sh = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (_rand(n, gen, x.device) * 2 - 1) * (1 - sw)
    cy = (_rand(n, gen, x.device) * 2 - 1) * (1 - sh)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = sw
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sh
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def horizontal_flip(x: torch.Tensor, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image left-right with probability ``p``."""
    mask = (_rand(x.shape[0], gen, x.device) < p).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-1), x)


def brightness_contrast(
    x: torch.Tensor, brightness: float, contrast: float, p: float, gen: torch.Generator | None = None
) -> torch.Tensor:
    """Random brightness shift and contrast scaling around the image mean (images in [-1, 1])."""
    n = x.shape[0]
    apply = (_rand(n, gen, x.device) < p).view(-1, 1, 1, 1)
    b = ((_rand(n, gen, x.device) * 2 - 1) * brightness).view(-1, 1, 1, 1)
    c = (1 + (_rand(n, gen, x.device) * 2 - 1) * contrast).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    y = ((x - mean) * c + mean + b).clamp(-1, 1)
    return torch.where(apply, y, x)


def gaussian_blur(
    x: torch.Tensor, sigma: tuple[float, float], p: float, gen: torch.Generator | None = None
) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (pixels), applied with probability ``p``."""
    n, ch, h, w = x.shape
    apply = _rand(n, gen, x.device) < p
    s = _rand(n, gen, x.device) * (sigma[1] - sigma[0]) + sigma[0]
    radius = max(1, min(int(3 * sigma[1] + 0.5), (min(h, w) - 1) // 2))
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kern = torch.exp(-(k.view(1, -1) ** 2) / (2 * s.view(-1, 1).to(x.dtype) ** 2))
    kern = kern / kern.sum(dim=1, keepdim=True)  # [n, K]
    # Grouped convolution: one kernel per (image, channel).
    xr = x.reshape(1, n * ch, h, w)
    kh = kern.repeat_interleave(ch, dim=0).view(n * ch, 1, 1, -1)
    kv = kern.repeat_interleave(ch, dim=0).view(n * ch, 1, -1, 1)
    y = F.conv2d(F.pad(xr, (radius, radius, 0, 0), mode="reflect"), kh, groups=n * ch)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), kv, groups=n * ch)
    y = y.view(n, ch, h, w)
    return torch.where(apply.view(-1, 1, 1, 1), y, x)


def gaussian_noise(x: torch.Tensor, std: float, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, std^2) noise with probability ``p`` per image, clamped to [-1, 1]."""
    apply = (_rand(x.shape[0], gen, x.device) < p).view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype) * std
    return torch.where(apply, (x + noise).clamp(-1, 1), x)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """Apply the full grey-level pipeline to a batch ``[N, C, H, W]`` of images in [-1, 1]."""
    if x.dim() != 4:
        raise ValueError(f"augment expects [N, C, H, W], got {tuple(x.shape)}")
    y = random_resized_crop(x, cfg.crop_scale, gen)
    y = horizontal_flip(y, cfg.flip_p, gen)
    y = brightness_contrast(y, cfg.brightness, cfg.contrast, cfg.jitter_p, gen)
    y = gaussian_blur(y, cfg.blur_sigma, cfg.blur_p, gen)
    return gaussian_noise(y, cfg.noise_std, cfg.noise_p, gen)


def two_views(x: torch.Tensor, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two asymmetrically augmented views of the same batch (Barlow Twins' A/B recipe, grey-level)."""
    return augment(x, VIEW_A, gen), augment(x, VIEW_B, gen)
