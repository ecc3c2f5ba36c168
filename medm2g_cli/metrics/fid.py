"""FID: the pytorch-fid Inception-v3 ("2015-12-05") network, written in plain torch, and the
closed-form Fréchet distance.

The network reproduces ``pytorch_fid.inception.fid_inception_v3`` (torchvision's Inception3 with
the FID-specific ``FIDInceptionA/C/E_1/E_2`` blocks that the TF graph used: average pooling that
does not count padding, max pooling in the last block) with the same parameter names, so the
state dict in ``pt_inception-2015-12-05-6726825d.pth`` loads as is. No torchvision.

Input handling follows pytorch-fid: images in [0, 1], three channels (grey replicated), bilinear
resize to 299x299 (``align_corners=False``), then ``2x - 1``. Features: 2048-d pool3.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DependencyError, InputError, WeightsError

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_WEIGHTS_ENV = "MEDM2G_FID_WEIGHTS"
FID_DIMS = 2048
FID_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# ----------------------------------------------------------------------------- Fréchet distance


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (Dowson & Landau), as pytorch-fid computes
    it: ``scipy.linalg.sqrtm``; if the product is singular, ``eps`` is added to both diagonals;
    a small imaginary part from numerical error is dropped (a large one is an error)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("feature statistics have different dimensions")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in the matrix square root")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``np.cov(rowvar=False)``, ddof 1, as pytorch-fid) of (N, D) features."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise InputError(f"FID needs at least 2 images per set, got {f.shape[0] if f.ndim == 2 else 0}",
                         "use more images (FID is biased at small N; report N with the number)")
    return f.mean(axis=0), np.cov(f, rowvar=False)


# ------------------------------------------------------------------------------------- network


def build_fid_inception() -> Any:
    """The FID Inception-v3 as an ``nn.Module`` with random weights (load a state dict into it)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicConv2d(nn.Module):
        def __init__(self, cin: int, cout: int, **kw: Any) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.bn(self.conv(x)), inplace=True)

    def avg3(x: torch.Tensor) -> torch.Tensor:
        # TF's average pooling ignores the zero padding: count_include_pad=False (the FID fix).
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class FIDInceptionA(nn.Module):
        def __init__(self, cin: int, pool_features: int) -> None:
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
            self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
            self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b1 = self.branch1x1(x)
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([b1, b5, b3, self.branch_pool(avg3(x))], 1)

    class InceptionB(nn.Module):
        def __init__(self, cin: int) -> None:
            super().__init__()
            self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b3 = self.branch3x3(x)
            bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class FIDInceptionC(nn.Module):
        def __init__(self, cin: int, c7: int) -> None:
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b1 = self.branch1x1(x)
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = self.branch7x7dbl_1(x)
            for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
                bd = layer(bd)
            return torch.cat([b1, b7, bd, self.branch_pool(avg3(x))], 1)

    class InceptionD(nn.Module):
        def __init__(self, cin: int) -> None:
            super().__init__()
            self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b3 = self.branch3x3_2(self.branch3x3_1(x))
            b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
            return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class FIDInceptionE(nn.Module):
        def __init__(self, cin: int, max_pool: bool) -> None:
            super().__init__()
            self.max_pool = max_pool  # E_2 (Mixed_7c) uses max pooling: a bug in the TF graph, kept for FID
            self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
            self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
            self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b1 = self.branch1x1(x)
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else avg3(x)
            return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)

    class FIDInceptionV3(nn.Module):
        """pool3 features (N, 2048) of images in [0, 1], any size (resized to 299 inside)."""

        def __init__(self) -> None:
            super().__init__()
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
            self.Mixed_5b = FIDInceptionA(192, 32)
            self.Mixed_5c = FIDInceptionA(256, 64)
            self.Mixed_5d = FIDInceptionA(288, 64)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = FIDInceptionC(768, 128)
            self.Mixed_6c = FIDInceptionC(768, 160)
            self.Mixed_6d = FIDInceptionC(768, 160)
            self.Mixed_6e = FIDInceptionC(768, 192)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
            self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
            # The 1008-way classifier is part of the published state dict; FID never uses it.
            self.fc = nn.Linear(2048, 1008)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = 2.0 * x - 1.0
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                         "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
                x = getattr(self, name)(x)
            return F.adaptive_avg_pool2d(x, output_size=(1, 1)).flatten(1)

    return FIDInceptionV3().eval()


def resolve_fid_weights(path: str | os.PathLike[str] | None) -> Path:
    """The FID weights file from ``--fid-weights`` or ``$MEDM2G_FID_WEIGHTS``; one clear line when absent."""
    chosen = path or os.environ.get(FID_WEIGHTS_ENV)
    where = f"download {FID_WEIGHTS_FILE} from the pytorch-fid GitHub release ({FID_WEIGHTS_URL})"
    if not chosen:
        raise DependencyError(f"FID needs the Inception weights file {FID_WEIGHTS_FILE}",
                              f"{where} and pass --fid-weights FILE or set {FID_WEIGHTS_ENV}")
    p = Path(chosen).expanduser()
    if not p.is_file():
        raise DependencyError(f"FID weights file '{p}' does not exist",
                              f"{where} and pass its local path with --fid-weights or {FID_WEIGHTS_ENV}")
    return p


def load_fid_inception(path: str | os.PathLike[str] | None) -> Any:
    """Build the network and load the pytorch-fid weights (``.pth`` via ``torch.load(weights_only=True)``,
    which unpickles tensors only, or a ``.safetensors`` conversion)."""
    import torch

    p = resolve_fid_weights(path)
    try:
        if p.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, wrong format: say which file
        raise WeightsError(f"cannot load FID weights '{p}': {' '.join(str(exc).split())[:200]}",
                           f"use the original {FID_WEIGHTS_FILE} or a safetensors conversion of it") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    net = build_fid_inception()
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in unexpected if not (k.endswith("num_batches_tracked") or k.startswith("AuxLogits."))]
    if missing or unexpected:
        raise WeightsError(f"'{p}' is not the FID Inception state dict "
                           f"(missing {len(missing)} keys e.g. {missing[:2]}, unexpected {len(unexpected)} e.g. {unexpected[:2]})",
                           f"use {FID_WEIGHTS_FILE} from the pytorch-fid release")
    return net.eval()


# --------------------------------------------------------------------------------- image input


def list_pictures(folder: Path) -> list[Path]:
    """Sorted picture files of a folder (PNG recommended: JPEG biases FID)."""
    p = Path(folder)
    if not p.is_dir():
        raise InputError(f"'{p}' is not a folder", "give a folder of PNG images")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in FID_PICTURE_SUFFIXES
                   and not f.name.startswith("."))
    if not files:
        raise InputError(f"'{p}' holds no images", f"expected {', '.join(FID_PICTURE_SUFFIXES)} files")
    return files


def load_picture(path: Path) -> tuple[np.ndarray, str]:
    """An image as float32 (3, H, W) in [0, 1], and its windowing rule.

    8-bit images: ``/255`` after PIL ``convert("RGB")`` (grey replicated to three channels, as every
    FID implementation's folder reader does). 16-bit grey images: ``/65535``, replicated. Both sets
    must use the same rule; :func:`compute_fid` checks that.
    """
    from ..io.png import open_picture

    try:
        with open_picture(path) as im:  # medm2g's size limit; a decompression bomb is an InputError
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float32) / 65535.0
                return np.repeat(np.clip(a, 0, 1)[None], 3, axis=0), "16-bit/65535"
            if im.mode == "F":
                raise InputError(f"'{path}' is a floating-point image", "window it to 8-bit PNG for FID")
            a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except OSError as exc:
        raise InputError(f"cannot read '{path}': {exc}", "check that the file is a valid image") from exc
    return a.transpose(2, 0, 1), "8-bit/255"


@dataclass
class FIDResult:
    """FID and the sizes it was computed on (FID is biased by N: always report it)."""

    fid: float
    n_pred: int
    n_ref: int
    dims: int
    weights: str

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"fid": self.fid, "n_pred": self.n_pred, "n_ref": self.n_ref, "dims": self.dims,
                "weights": self.weights,
                "protocol": "pytorch-fid: RGB-replicated grey in [0,1], bilinear 299, 2x-1, pool3 2048-d"}


def extract_features(net: Any, files: list[Path], batch_size: int = 16, device: str = "cpu") -> tuple[np.ndarray, set[str]]:
    """pool3 features of image files, batched (images of one batch are resized to 299 anyway)."""
    import torch

    feats: list[np.ndarray] = []
    rules: set[str] = set()
    net = net.to(device)
    with torch.no_grad():
        for start in range(0, len(files), batch_size):
            batch = []
            for f in files[start : start + batch_size]:
                arr, rule = load_picture(f)
                rules.add(rule)
                # resize each image on its own first so sizes may differ within a folder
                t = torch.from_numpy(arr)[None]
                batch.append(torch.nn.functional.interpolate(t, size=(299, 299), mode="bilinear", align_corners=False)
                             if t.shape[-2:] != (299, 299) else t)
            out = net(torch.cat(batch).to(device))
            feats.append(out.cpu().numpy().astype(np.float64))
    return np.concatenate(feats), rules


def compute_fid(pred_dir: Path, ref_dir: Path, weights: str | os.PathLike[str] | None, *, batch_size: int = 16,
                device: str = "cpu", net: Any = None) -> FIDResult:
    """FID between two folders of images (weights checked before any image is read)."""
    wpath = resolve_fid_weights(weights) if net is None else Path(str(weights or "<in-memory network>"))
    pred_files, ref_files = list_pictures(pred_dir), list_pictures(ref_dir)
    if len(pred_files) < 2 or len(ref_files) < 2:
        raise InputError(f"FID needs at least 2 images per set (got {len(pred_files)} and {len(ref_files)})",
                         "use more images")
    if net is None:
        net = load_fid_inception(wpath)
    fp, rp = extract_features(net, pred_files, batch_size, device)
    fr, rr = extract_features(net, ref_files, batch_size, device)
    if rp != rr or len(rp) > 1:
        raise InputError(f"the two image sets use different bit depths ({sorted(rp)} vs {sorted(rr)})",
                         "window both sets identically to 8-bit PNG before FID")
    mu1, s1 = feature_stats(fp)
    mu2, s2 = feature_stats(fr)
    return FIDResult(fid=frechet_distance(mu1, s1, mu2, s2), n_pred=len(pred_files), n_ref=len(ref_files),
                     dims=fp.shape[1], weights=str(wpath))
