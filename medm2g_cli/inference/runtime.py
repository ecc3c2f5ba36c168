"""Runtime choices made once per run: weights folder, branches, device, precision, batch size.

Everything that can fail because of the user's setup (no weights, a branch missing, a bad device
string) is checked here *before* any model is loaded or any slice is processed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import modalities
from ..errors import ConfigError, WeightsError

Log = Callable[[str], None]

# "auto": fp32, except the autoencoders in bf16 on CPUs that compute bf16 natively
# (:func:`autoencoder_dtype`); "fp32": everything fp32; "bf16"/"fp16": autocast of the whole model.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _nolog(_: str) -> None:
    return None


@dataclass
class InferenceSettings:
    """Settings shared by every inference command (the common CLI options)."""

    weights: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    steps: int | None = None
    guidance: float | None = None
    eta: float | None = None
    sampler: str | None = None  # None (unset): the model's medm2g.json "sampling" block, else DDIM
    seed: int = 0
    batch_size: int | None = None
    verify: bool = True
    compile: bool = False  # torch.compile the UNets (minutes of compile time; pays off on GPU volume jobs)
    channels_last: bool | None = None  # None: on for CUDA only
    guidance_stop: float | None = None  # fraction of steps with guidance (None: model, else 1.0)
    spacing: str | None = None  # timestep spacing (None: model, else the sampler's own)

    def sample_config(self, seed: int | None = None, model: dict[str, Any] | None = None) -> Any:
        """The engine's :class:`SampleConfig`: each setting from its flag, else from the model's
        ``sampling`` block (``model``, see :mod:`medm2g_cli.inference.sampling`), else Table A3."""
        return self.sample_origin(seed, model)[0]

    def sample_origin(self, seed: int | None = None, model: dict[str, Any] | None = None
                      ) -> tuple[Any, dict[str, str]]:
        """(SampleConfig, where each setting came from: flag|model|preset)."""
        from .sampling import KEYS, resolve

        return resolve({k: getattr(self, k) for k in KEYS}, model, self.seed if seed is None else seed)

    def validate(self) -> InferenceSettings:
        """Check option values that need no model (raises :class:`ConfigError`)."""
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{self.precision}'", f"use one of: {', '.join(PRECISIONS)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size} is not positive", "use 1 or more (or leave it out)")
        self.sample_config()
        parse_device_spec(self.device)
        return self

    def as_dict(self, model: dict[str, Any] | None = None) -> dict[str, Any]:
        """JSON-friendly settings for run reports: the sampler settings used (``model``: the
        model's ``sampling`` block) and, under ``sampling_source``, where each came from."""
        from .sampling import as_dict

        s, origin = self.sample_origin(model=model)
        return {"weights": str(self.weights) if self.weights else None, "device": self.device,
                "precision": self.precision, **as_dict(s), "seed": s.seed, "sampling_source": origin,
                "batch_size": self.batch_size, "verify": self.verify,
                "compile": self.compile, "channels_last": self.channels_last}


def default_weights() -> tuple[Path | None, str]:
    """The default model and where it came from: the per-user data folder's default model
    (``medm2g weights install``, ``$MEDM2G_HOME``), else the source checkout's ``weights/medm2g-demo``."""
    from .. import home

    name = home.default_model_name()
    if name is not None:
        return home.models_dir() / name, f"the default installed model in {home.data_home()}"
    demo = home.checkout_demo()
    if demo is not None:
        return demo, "the demo model of the source checkout"
    return None, "no model"


def resolve_weights(path: str | os.PathLike[str] | None) -> Path:
    """``--weights DIR`` (or the name of an installed model), else ``$MEDM2G_WEIGHTS``, else the
    default installed model in the data folder, else the checkout's demo model; :class:`WeightsError`
    if none exists."""
    from .. import home

    if path is not None:
        p, origin = Path(path), "--weights"
        if not p.exists() and home.installed_model(str(path)) is not None:
            p, origin = home.models_dir() / str(path), f"installed model '{path}'"
    elif os.environ.get("MEDM2G_WEIGHTS"):
        p, origin = Path(os.environ["MEDM2G_WEIGHTS"]), "$MEDM2G_WEIGHTS"
    else:
        found, origin = default_weights()
        if found is None:
            raise WeightsError(
                f"no model is installed in {home.data_home()}",
                "install one with `medm2g weights install PATH|ARCHIVE` (MEDM2G_HOME moves the data folder), "
                "or pass --weights DIR / set MEDM2G_WEIGHTS",
            )
        p = found
    if not p.is_dir():
        raise WeightsError(
            f"model folder '{p}' ({origin}) does not exist",
            "install a model with `medm2g weights install PATH|ARCHIVE`, build the demo model with `make weights`, "
            "or pass --weights DIR / set MEDM2G_WEIGHTS",
        )
    if not (p / "medm2g.json").is_file():
        raise WeightsError(f"'{p}' ({origin}) is not a medm2g model folder (no medm2g.json)",
                           "pass a folder written by `medm2g weights init` or `medm2g pretrain`")
    return p


def check_branches(weights: Path, needed: Iterable[str]) -> dict[str, Any]:
    """Read ``medm2g.json`` and make sure the model has every branch in ``needed`` (modalities or
    MRI contrasts). Cheap: no weights are loaded. Returns the metadata."""
    import json

    # Plain JSON read (no torch import): a missing branch is reported in well under a second.
    try:
        meta = json.loads((weights / "medm2g.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read '{weights / 'medm2g.json'}' ({exc})", "restore the model folder") from exc
    have = list(meta.get("modalities", []))
    for name in needed:
        mod = modalities.get(name).name
        if mod not in have:
            raise WeightsError(
                f"the model in '{weights}' has no {mod} branch (it has: {', '.join(have) or 'none'})",
                f"use weights trained with {mod} (e.g. `medm2g weights init --modalities ...,{mod}`)",
            )
    return meta


def weights_hash(weights: Path) -> str:
    """sha256 of the folder's ``medm2g.json``: it records the sha256 of every file, so it identifies
    the whole model without hashing gigabytes."""
    import hashlib

    return hashlib.sha256((weights / "medm2g.json").read_bytes()).hexdigest()


def parse_device_spec(spec: str) -> str:
    """Validate a ``--device`` value (auto|cpu|cuda|cuda:N|mps) and return it normalised."""
    s = spec.strip().lower()
    if s in ("auto", "cpu", "cuda", "mps") or (s.startswith("cuda:") and s[5:].isdigit()):
        return s
    if s == "gpu":
        return "cuda"
    raise ConfigError(f"unknown device '{spec}'", "use auto, cpu, cuda, cuda:N or mps")


def select_device(spec: str, log: Log = _nolog) -> Any:
    """Pick the torch device; falls back to CPU with a warning when the requested one is missing."""
    import torch

    s = parse_device_spec(spec)
    cuda_ok = torch.cuda.is_available()
    mps_ok = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if s == "auto":
        if cuda_ok:
            return torch.device("cuda")
        if mps_ok:
            return torch.device("mps")
        log("warning: no GPU detected, running on CPU — pass --device cpu to choose it and hide this line")
        return torch.device("cpu")
    if s.startswith("cuda"):
        if not cuda_ok:
            log(f"warning: --device {s} requested but CUDA is not available; falling back to CPU (slow)")
            return torch.device("cpu")
        idx = int(s[5:]) if ":" in s else 0
        if idx >= torch.cuda.device_count():
            raise ConfigError(f"--device {s}: only {torch.cuda.device_count()} CUDA device(s) present",
                              "use cuda:0 .. cuda:N-1 or CUDA_VISIBLE_DEVICES")
        return torch.device(s)
    if s == "mps":
        if not mps_ok:
            log("warning: --device mps requested but MPS is not available; falling back to CPU (slow)")
            return torch.device("cpu")
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device: Any, precision: str, log: Log = _nolog) -> contextlib.AbstractContextManager[Any]:
    """Autocast context for ``precision`` on ``device`` (fp32: no autocast).

    fp16 on CPU is not a supported autocast type, so it falls back to bf16 with a warning.
    """
    import torch

    if precision in ("fp32", "auto"):  # "auto" casts the autoencoders only (autoencoder_dtype)
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and dtype is torch.float16:
        log("warning: fp16 autocast is not supported on CPU; using bf16")
        dtype = torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (AVX512-BF16 or AMX); elsewhere bf16 is
    emulated and slower than fp32."""
    import torch

    cpu = torch.cpu
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def autoencoder_dtype(device: Any, precision: str) -> Any:
    """The dtype the image autoencoders run in for ``precision`` on ``device``; None: the model's own (fp32).

    ``auto`` on a CPU with native bf16 runs them in bf16: they are a quarter to a third of a
    few-step run there (make bench, per-stage breakdown), bf16 makes them about 2.5x faster, and
    the outputs are as good: PSNR +0.02 dB (T1+T2->PD) and MAE -0.2 HU (MRI->CT) against fp32 on
    two held-out phantom heads (issue 20). The UNets stay fp32, where bf16 costs accuracy over
    many steps. ``fp32`` keeps everything fp32."""
    import torch

    if precision == "auto" and getattr(device, "type", str(device)) == "cpu" and cpu_computes_bf16():
        return torch.bfloat16
    return None


def auto_batch_size(device: Any, image_size: int, samples: int = 1, guidance: bool = True) -> int:
    """Slices per forward pass when ``--batch-size`` is not given.

    CPU throughput is flat beyond batch 2 (performance.md section 2); on CUDA the batch is sized
    from free memory with a conservative per-image activation estimate (SD-1.5 scale: about
    0.4 GB per 512 px image in the VAE decoder, scaled with the pixel count).
    """
    import torch

    per_row = max(1, samples) * (2 if guidance else 1)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per_image = 0.5e9 * (image_size / 512) ** 2 + 16e6
        return int(max(1, min(64, (0.6 * free) // (per_image * per_row))))
    if device.type == "mps":
        return 4
    # CPU: throughput is flat beyond about 64k pixels per forward (SD-1.5 size: batch 2 with
    # guidance, performance.md section 2); small models are overhead-bound and gain from more
    # slices per forward (small preset, 64 px: 8 slices x 2 guidance rows).
    pixels = image_size * image_size * per_row
    return int(max(2, min(16, CPU_PIXELS_PER_FORWARD // pixels)))


# Pixels per CPU forward (rows x image side^2). Measured on the demo model (small preset, 128 px,
# 1 thread): 0.117 s per UNet row at 4 rows, 0.085 at 16, 0.080 at 32 (issue 20); SD-1.5-sized
# models stay at the minimum of 2 slices.
CPU_PIXELS_PER_FORWARD = 16 * 128 * 128


def cpu_threads() -> int:
    """Intra-op threads for CPU work: the CPUs this process may run on (``os.sched_getaffinity``),
    capped by a cgroup CPU quota (``/sys/fs/cgroup/cpu.max``) where one is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def set_cpu_threads() -> int:
    """Set torch's intra-op threads to :func:`cpu_threads` unless the user chose them
    (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``); more threads than CPUs makes every step wait on
    descheduled threads. Returns the number in effect."""
    import torch

    if not (os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS")):
        n = cpu_threads()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return int(torch.get_num_threads())


def load_model(weights: Path, device: Any, verify: bool = True, *, compile: bool = False,  # noqa: A002
               channels_last: bool | None = None, precision: str = "auto") -> Any:
    """Load the model folder onto ``device`` in fp32 (precision is applied by autocast, and for
    ``auto`` by :func:`autoencoder_dtype`) with the speed options of
    :func:`medm2g_cli.engine.speed.optimize_for_inference` applied."""
    from ..engine import MedM2G
    from ..engine.speed import optimize_for_inference

    if getattr(device, "type", str(device)) == "cpu":
        set_cpu_threads()
    model = MedM2G.from_pretrained(weights, device=device, verify=verify)
    return optimize_for_inference(model, channels_last=channels_last, compile=compile,
                                  vae_dtype=autoencoder_dtype(device, precision))


def versions() -> dict[str, str]:
    """Versions of the packages that determine outputs (for run reports)."""
    import platform

    from .. import __version__

    out = {"medm2g": __version__, "python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "numpy", "nibabel", "pydicom", "SimpleITK"):
        try:
            from importlib.metadata import version

            out[name] = version(name.lower() if name != "SimpleITK" else "SimpleITK")
        except Exception:  # noqa: BLE001 - a missing optional package is just not reported
            continue
    return out
