"""The figures of ``make bench`` (issue 10; figure 8: issue 20). Each returns a JSON-ready dict and is
named by what it measures (the list, numbers and sizes: :mod:`bench.registry`).

Every figure is a ratio against a baseline measured in the same run (these machines are noisy),
the median of several runs. Sizes are kept small where the ratio does not depend on them; each
figure records the sizes it used under ``settings``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .common import median, medians

ROOT = Path(__file__).resolve().parents[1]


def _torch_setup(threads: int | None = None) -> Any:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch


# -- 1. translate throughput: medm2g vs a plain per-slice diffusers loop ------------------------------


def plain_translate_slice(model: Any, x: Any, sample: Any, seed: int) -> Any:
    """The baseline: one slice at a time, written like a diffusers pipeline from the same parts.

    Source encoded with the same VAE, conditioning from the same encoders/conditioner, diffusers'
    own ``DDIMScheduler.step`` (eta, generator), guidance as a batch of two (as
    ``StableDiffusionPipeline`` does), VAE decode; ``torch.no_grad``. No slice batching, no
    hoisting: conditioning is rebuilt for every slice and step inputs concatenated every step.
    """
    import torch

    from medm2g_cli.engine import schedulers

    with torch.no_grad():
        emb = model.embed_image("mri", x)
        z_src = model.encode_image("mri", x)
        ctx = model.context_tokens("mri", z_src, 0)
        cond = model.prompt_tokens("ct", emb, None, [("mri", ctx)], batch=1)
        null = model.null_tokens_like("ct", cond, None)
        sched = schedulers.ddim_scheduler(model.config.scheduler)
        sched.set_timesteps(sample.steps)
        g = torch.Generator("cpu").manual_seed(seed)
        z = torch.randn((1, *model.latent_shape("ct")), generator=g) * sched.init_noise_sigma
        unet = model.parts["unet_ct"]
        for t in sched.timesteps:
            eps = unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([null, cond])).sample
            e_u, e_c = eps.chunk(2)
            eps = e_u + sample.guidance * (e_c - e_u)
            z = sched.step(eps, t, z, eta=sample.eta, generator=g).prev_sample
        return model.decode_image("ct", z)


def translate_throughput(size: dict[str, Any]) -> dict[str, Any]:
    """Slices/s of ``translate_sources`` vs the plain per-slice loop (small preset, CPU, fp32)."""
    torch = _torch_setup()
    from medm2g_cli.config import SampleConfig
    from medm2g_cli.data.transforms import Normalisation, SliceGeometry
    from medm2g_cli.engine import MedM2G
    from medm2g_cli.engine.speed import optimize_for_inference
    from medm2g_cli.inference.pipeline import Source, translate_sources
    from medm2g_cli.inference.runtime import auto_batch_size
    from medm2g_cli.io.volume import Volume

    preset, n, steps, runs = size["preset"], size["slices"], size["steps"], size["runs"]
    model = optimize_for_inference(MedM2G.from_preset(preset, seed=0, modalities=("ct", "mri")))
    side = model.image_size
    rng = np.random.default_rng(0)
    arr = rng.uniform(0, 1000, size=(side, side, n)).astype(np.float32)
    vol = Volume(arr, np.eye(4), modality="mri")
    sample = SampleConfig(steps=steps, guidance=2.0, eta=1.0, seed=0)
    bs = auto_batch_size(torch.device("cpu"), side, 1, True)

    def ours() -> None:
        translate_sources(model, [Source("mri", vol)], "ct", sample=sample, batch_size=bs)

    geom = SliceGeometry(side, side, side)
    norm = Normalisation("mri", 0.0, 1000.0)

    def plain() -> None:
        for k in range(n):
            x = geom.to_model(norm.forward(arr[:, :, k][None]))
            plain_translate_slice(model, x, sample, k)

    # Interleave the two so load changes on a shared machine hit both alike.
    t_ours, t_plain = [], []
    ours()
    plain_translate_slice(model, geom.to_model(norm.forward(arr[:, :, 0][None])), sample, 0)  # warm-up
    for _ in range(runs):
        t_ours.append(medians(1, ours)["median_s"])
        t_plain.append(medians(1, plain)["median_s"])
    m_o, m_p = median(t_ours), median(t_plain)
    ratio = m_p / m_o
    return {
        "name": "translate throughput, medm2g vs plain per-slice diffusers loop",
        "medm2g_slices_per_s": n / m_o, "plain_slices_per_s": n / m_p,
        "runs_s": {"medm2g": t_ours, "plain": t_plain},
        "ratio": ratio, "target": ">= 2", "pass": ratio >= 2.0,
        "settings": {"preset": preset, "slices": n, "image": side, "steps": steps, "sampler": "ddim", "eta": 1.0,
                     "guidance": 2.0, "precision": "fp32", "device": "cpu", "medm2g_batch_size": bs,
                     "plain_batch": "1 slice (2 rows with guidance)"},
    }


# -- 2. peak memory vs slice count ---------------------------------------------------------------------

_MEM_CHILD = r"""
import json, sys, numpy as np, torch
sys.path.insert(0, {root!r})
from bench.common import proc_status_kb, reset_peak_rss
from medm2g_cli.api import translate_volume
from medm2g_cli.engine import MedM2G
from medm2g_cli.inference.runtime import InferenceSettings
from medm2g_cli.io.volume import Volume
torch.set_num_threads(1)
side, n = {side}, {n}
model = MedM2G.from_preset("tiny", seed=0, modalities=("ct", "mri")).eval()
rng = np.random.default_rng(0)
arr = rng.integers(-1000, 1500, size=(side, side, n), dtype=np.int16)
vol = Volume(arr, np.diag([0.8, 0.8, 1.0, 1.0]), modality="ct")
settings = InferenceSettings(steps={steps}, batch_size={bs})
# warm up the kernels on two slices so one-off allocations are not counted
translate_volume(Volume(arr[:, :, :2].copy(), vol.affine, modality="ct"), "ct2mri", model, settings=settings)
before = proc_status_kb("VmRSS")
ok = reset_peak_rss()
res = translate_volume(vol, "ct2mri", model, settings=settings)
peak = proc_status_kb("VmHWM")
print(json.dumps({{"rss_before_kb": before, "peak_kb": peak, "reset_ok": ok,
                  "input_bytes": int(arr.nbytes), "output_bytes": int(res.mean.array.nbytes)}}))
"""


def _mem_child(side: int, n: int, steps: int, bs: int) -> dict[str, Any]:
    code = _MEM_CHILD.format(root=str(ROOT), side=side, n=n, steps=steps, bs=bs)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_memory_vs_slices(size: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of translating side x side x big vs side x side x small (tiny preset, child processes).

    ``working`` = peak RSS during translation - RSS before it (model and input already loaded)
    - bytes of the returned output volume. The input and output arrays are the data themselves
    and scale with the volume by definition; everything else (normalisation, slices, activations,
    decoded batches) must not. The ratio of total peak RSS is reported too.
    """
    side, small, big, steps, bs, runs = (size[k] for k in ("side", "small", "big", "steps", "batch", "runs"))
    res: dict[int, list[dict[str, Any]]] = {small: [], big: []}
    for _ in range(runs):
        for n in (small, big):
            res[n].append(_mem_child(side, n, steps, bs))

    def working_mb(r: dict[str, Any]) -> float:
        return (r["peak_kb"] - r["rss_before_kb"]) / 1024 - r["output_bytes"] / 2**20

    w = {n: median([working_mb(r) for r in res[n]]) for n in res}
    tot = {n: median([r["peak_kb"] / 1024 for r in res[n]]) for n in res}
    ratio = w[big] / max(w[small], 1e-6)
    return {
        "name": f"peak memory translating {side}x{side}x{big} vs {side}x{side}x{small}",
        "working_mb": {str(k): round(v, 1) for k, v in w.items()},
        "peak_rss_total_mb": {str(k): round(v, 1) for k, v in tot.items()},
        "output_mb": {str(n): round(res[n][0]["output_bytes"] / 2**20, 1) for n in res},
        "input_mb": {str(n): round(res[n][0]["input_bytes"] / 2**20, 1) for n in res},
        "ratio": ratio, "ratio_total_rss": tot[big] / tot[small], "target": "< 1.5 (working memory)",
        "pass": ratio < 1.5, "peak_reset_supported": all(r["reset_ok"] for v in res.values() for r in v),
        "settings": {"preset": "tiny", "direction": "ct2mri", "input": "int16 HU", "steps": steps, "batch_size": bs,
                     "note": "working = peak RSS growth during translate_volume minus the returned output array; "
                             "total RSS includes the interpreter, torch, the model, the input and the output, "
                             "which scale with the volume by definition"},
    }


# -- 3. CLI start-up ------------------------------------------------------------------------------------


def help_startup_time(size: dict[str, Any]) -> dict[str, Any]:
    """``medm2g --help`` wall time vs ``python -c "import torch"``."""
    exe = Path(sys.executable).parent / "medm2g"
    cli = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "medm2g_cli", "--help"]
    torch_cmd = [sys.executable, "-c", "import torch"]

    def run(cmd: list[str]) -> None:
        subprocess.run(cmd, capture_output=True, check=True)

    t_cli, t_torch = [], []
    run(cli)
    run(torch_cmd)  # warm the page cache for both
    for _ in range(size["runs"]):
        t_cli.append(medians(1, lambda: run(cli))["median_s"])
        t_torch.append(medians(1, lambda: run(torch_cmd))["median_s"])
    ratio = median(t_cli) / median(t_torch)
    return {"name": "medm2g --help vs python -c 'import torch'", "help_s": median(t_cli),
            "import_torch_s": median(t_torch), "runs_s": {"help": t_cli, "import_torch": t_torch},
            "ratio": ratio, "target": "< 0.3", "pass": ratio < 0.3, "settings": {"command": " ".join(cli[-2:])}}


# -- 4. DICOM series reading ------------------------------------------------------------------------------


def dicom_read_time(size: dict[str, Any]) -> dict[str, Any]:
    """``medm2g_cli.io.read_volume`` vs SimpleITK ``ImageSeriesReader`` on a series written by medm2g."""
    import SimpleITK as sitk  # noqa: N813

    from medm2g_cli.io import read_volume
    from medm2g_cli.io.dicom_write import write_dicom
    from medm2g_cli.io.volume import Volume

    side, n = size["side"], size["slices"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        rng = np.random.default_rng(0)
        arr = rng.integers(-1000, 2000, size=(side, side, n)).astype(np.float32)
        write_dicom(Volume(arr, np.diag([0.7, 0.7, 1.5, 1.0]), modality="ct"), folder)

        def ours() -> Any:
            return read_volume(folder).array

        def itk() -> Any:
            r = sitk.ImageSeriesReader()
            r.SetFileNames(r.GetGDCMSeriesFileNames(str(folder)))
            return sitk.GetArrayFromImage(r.Execute())

        a, b = ours(), itk()  # warm-up + sanity: same voxels
        same = bool(np.allclose(np.sort(a.ravel()), np.sort(b.ravel().astype(a.dtype)), atol=1.0))
        t_o, t_i = [], []
        for _ in range(size["runs"]):
            t_o.append(medians(1, ours)["median_s"])
            t_i.append(medians(1, itk)["median_s"])
    ratio = median(t_o) / median(t_i)
    return {"name": "DICOM series read, medm2g vs SimpleITK ImageSeriesReader", "medm2g_s": median(t_o),
            "sitk_s": median(t_i), "runs_s": {"medm2g": t_o, "sitk": t_i}, "same_voxels": same,
            "ratio": ratio, "target": "< 1.5", "pass": ratio < 1.5,
            "settings": {"slices": n, "side": side, "writer": "medm2g_cli.io.dicom_write.write_dicom"}}


# -- 5. training throughput --------------------------------------------------------------------------------


class _DiffusionJob:
    """A TrainJob over cached latents (``--cache-latents``) for the medm2g loop: ct branch,
    pooled prompt conditioning, 10 % condition dropout (the diffusion stage's loss)."""

    name = "diffusion"

    def __init__(self, model: Any, latents: Any, prompts: Any) -> None:
        import torch

        self.module = model
        self.model = model
        self.dataset = torch.utils.data.TensorDataset(latents, prompts)
        self.val_dataset = None
        from medm2g_cli.training.trainable import trainable_parameters

        params = trainable_parameters(model, "diffusion", ["ct"])
        self._params = params["unet_ct"] + params["conditioner_ct"]

    def trainable_parameters(self) -> list[Any]:
        return self._params

    def collate(self, items: list[Any]) -> Any:
        import torch

        return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])

    def compute(self, batch: Any, step: int) -> dict[str, Any]:
        dev = self.model.device
        z0, cond = batch
        from medm2g_cli.training.objectives import diffusion_loss

        return {"loss": diffusion_loss(self.model, "ct", z0.to(dev), cond.to(dev), cond_drop_prob=0.1)}

    def before_step(self, step: int) -> None:
        return None

    def save_model(self, path: Path) -> None:  # pragma: no cover - never saved by the benchmark
        self.model.save_pretrained(path)


def _plain_train(unet: Any, latents: Any, tokens: Any, steps: int, bs: int, scheduler: Any) -> float:
    """A plain diffusers training loop (train_text_to_image style) on ``unet``; returns seconds."""
    import time

    import torch
    import torch.nn.functional as F  # noqa: N812

    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    unet.train()
    n = latents.shape[0]
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, n, (bs,), generator=g)
        z0, enc = latents[idx], tokens[idx]
        noise = torch.randn_like(z0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (bs,))
        pred = unet(scheduler.add_noise(z0, noise, t), t, encoder_hidden_states=enc).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    float(loss)  # one host sync, so a GPU run's time includes its queued work
    return time.perf_counter() - t0


def train_throughput(preset: str, steps: int, bs: int, runs: int, device: str = "cpu",
                     mixed_precision: str = "no") -> dict[str, Any]:
    """samples/s of the medm2g training loop and of a plain diffusers loop on a copy of the same UNet."""
    import torch

    from medm2g_cli.engine import MedM2G
    from medm2g_cli.training.config import LoopConfig
    from medm2g_cli.training.loop import make_accelerator, run_phase

    model = MedM2G.from_preset(preset, seed=0, modalities=("ct", "mri")).to(device)
    g = torch.Generator().manual_seed(0)
    n = max(4 * bs, 16)
    latents = torch.randn((n, *model.latent_shape("ct")), generator=g)
    prompts = torch.nn.functional.normalize(torch.randn((n, model.config.encoders.embed_dim), generator=g), dim=-1)
    plain_unet = copy.deepcopy(model.parts["unet_ct"])
    with torch.no_grad():
        tokens = model.prompt_tokens("ct", prompts.to(device), None, batch=n).detach().cpu()
    job = _DiffusionJob(model, latents, prompts)
    t_ours, t_plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        def ours(k: int) -> float:
            cfg = LoopConfig(steps=k, batch_size=bs, lr=1e-4, mixed_precision=mixed_precision, log_every=10**9)
            from accelerate.state import AcceleratorState

            # Accelerate's state is a process-wide singleton: a second precision in the same
            # process (device script after make bench figures, tests) needs a reset.
            AcceleratorState._reset_state(True)
            acc = make_accelerator(cfg, cpu=device == "cpu")
            run_dir = Path(tempfile.mkdtemp(dir=tmp))
            return run_phase(job, cfg, acc, run_dir).seconds

        lat_d, tok_d = latents.to(device), tokens.to(device)
        sched = model.train_scheduler
        ac = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) \
            if mixed_precision == "bf16" else torch.autocast(device_type="cpu", enabled=False)

        def plain(k: int) -> float:
            with ac:
                return _plain_train(plain_unet, lat_d, tok_d, k, bs, sched)

        ours(1)
        plain(1)  # warm-up
        for _ in range(runs):
            t_ours.append(ours(steps))
            t_plain.append(plain(steps))
    s_o, s_p = steps * bs / median(t_ours), steps * bs / median(t_plain)
    return {"medm2g_samples_per_s": s_o, "plain_samples_per_s": s_p, "ratio": s_o / s_p,
            "runs_s": {"medm2g": t_ours, "plain": t_plain},
            "settings": {"preset": preset, "steps": steps, "batch_size": bs, "device": device,
                         "mixed_precision": mixed_precision, "data": "cached latents (--cache-latents)"}}


def training_throughput(size: dict[str, Any]) -> dict[str, Any]:
    """Training samples/s, medm2g loop vs a plain diffusers loop on the same UNet (small preset, CPU)."""
    _torch_setup()
    r = train_throughput(size["preset"], size["steps"], size["batch"], size["runs"])
    return {"name": "training samples/s, medm2g vs plain diffusers loop", **r, "target": ">= 0.9",
            "pass": r["ratio"] >= 0.9}


# -- 6. DDIM-50 vs DPM-Solver++-20 ----------------------------------------------------------------------


def _model_for_quality(preset: str) -> tuple[Any, str]:
    from medm2g_cli.engine import MedM2G

    # $MEDM2G_WEIGHTS, else the shipped demo model (trained, so PSNR vs the phantom CT means something)
    w = os.environ.get("MEDM2G_WEIGHTS") or str(Path(__file__).resolve().parents[1] / "weights" / "medm2g-demo")
    if Path(w, "medm2g.json").is_file():
        m = MedM2G.from_pretrained(w)
        if {"ct", "mri"} <= set(m.config.modalities):
            return m.eval(), f"trained weights {w}"
    return MedM2G.from_preset(preset, seed=0, modalities=("ct", "mri")).eval(), "random-init"


def ddim50_vs_dpm20(size: dict[str, Any]) -> dict[str, Any]:
    """Time and PSNR of DDIM-50 vs DPM-Solver++-20 translating phantom T1 slices to CT."""
    _torch_setup()
    from medm2g_cli.config import SampleConfig
    from medm2g_cli.data.phantom import generate_brain_subject
    from medm2g_cli.data.transforms import normalisation_for
    from medm2g_cli.engine.speed import optimize_for_inference
    from medm2g_cli.inference.pipeline import Source, translate_sources
    from medm2g_cli.io.volume import Volume
    from medm2g_cli.metrics.image import psnr_slices

    model, weights = _model_for_quality(size["preset"])
    optimize_for_inference(model)
    subj = generate_brain_subject(0, resolution=2)
    mid = subj.shape[2] // 2
    k = size["slices"]
    sl = slice(mid - k // 2, mid - k // 2 + k)
    t1 = Volume(subj.images["t1"][:, :, sl].astype(np.float32), subj.affine, modality="mri")
    ct = subj.images["ct"][:, :, sl].astype(np.float32)
    win = normalisation_for(ct, "ct")

    def to01(x: np.ndarray) -> np.ndarray:
        return np.transpose((win.forward(x) + 1) / 2, (2, 0, 1))  # [slices, h, w] in [0, 1]

    out: dict[str, Any] = {}
    results = {}
    for name, cfg in (("ddim50", SampleConfig(sampler="ddim", steps=size["ddim_steps"], seed=0)),
                      ("dpm20", SampleConfig(sampler="dpm++", steps=size["dpm_steps"], seed=0))):
        times, res = [], None
        for _ in range(size["runs"]):
            r = translate_sources(model, [Source("mri", t1)], "ct", sample=cfg, batch_size=k)
            times.append(r.timings["model_s"])
            res = r.mean.array
        results[name] = res
        out[name] = {"median_s": median(times), "runs_s": times,
                     "psnr_db": float(np.mean(psnr_slices(to01(res), to01(ct))))}
    agree = float(np.mean(psnr_slices(to01(results["dpm20"]), to01(results["ddim50"]))))
    ratio = out["ddim50"]["median_s"] / out["dpm20"]["median_s"]
    return {"name": "DDIM-50 vs DPM-Solver++-20 on phantom T1->CT", **out, "time_ratio": ratio,
            "psnr_diff_db": out["dpm20"]["psnr_db"] - out["ddim50"]["psnr_db"],
            "psnr_dpm_vs_ddim_db": agree, "weights": weights,
            "note": ("random-init weights: PSNR vs the phantom CT is not a quality measure; set MEDM2G_WEIGHTS "
                     "to a trained model" if weights == "random-init" else "trained weights"),
            "settings": {"preset": model.config.preset, "slices": k, "ddim_steps": size["ddim_steps"],
                         "dpm_steps": size["dpm_steps"], "eta": 1.0, "guidance": 2.0,
                         "phantom": "generate_brain_subject(0, resolution=2), central axial slices"}}


# -- 7. FLOPs per UNet evaluation -------------------------------------------------------------------------------


def unet_inputs(model_or_cfg: Any, batch: int, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any, Any]:
    """(latent, timesteps, tokens) for one UNet evaluation of the ct branch at ``batch``."""
    import torch

    cfg = getattr(model_or_cfg, "config", model_or_cfg)
    img = cfg.image
    dtype = dtype or torch.float32
    ls = img.latent_size
    ctx = min(cfg.context_grid, ls) ** 2
    z = torch.randn((batch, img.latent_channels, ls, ls), device=device, dtype=dtype)
    t = torch.full((batch,), 500, device=device)
    tok = torch.randn((batch, 2 + ctx, cfg.cross_attention_dim), device=device, dtype=dtype)
    return z, t, tok


def count_unet_flops(cfg: Any, device: str = "meta") -> int:
    """FLOPs of one batch-1 UNet evaluation (bmm attention, so the counter sees attention)."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor
    from torch.utils.flop_counter import FlopCounterMode

    from medm2g_cli.engine.unet import build_image_unet

    with torch.device(device):
        unet = build_image_unet(cfg)
    unet.set_attn_processor(AttnProcessor())
    z, t, tok = unet_inputs(cfg, 1, device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        unet(z, t, encoder_hidden_states=tok)
    return int(counter.get_total_flops())


def unet_flops(size: dict[str, Any]) -> dict[str, Any]:
    """GFLOP per UNet evaluation per preset (counted on the meta device) and achieved GFLOP/s on CPU."""
    torch = _torch_setup()
    from medm2g_cli.config import model_preset
    from medm2g_cli.engine.unet import build_image_unet

    out: dict[str, Any] = {"name": "FLOPs per UNet evaluation and achieved FLOP/s", "presets": {}}
    for preset in size["presets"]:
        cfg = model_preset(preset, modalities=("ct", "mri"))
        flops = count_unet_flops(cfg)
        row: dict[str, Any] = {"gflop_per_eval": flops / 1e9, "latent": cfg.image.latent_size}
        if preset in size["timed"]:
            torch.manual_seed(0)
            unet = build_image_unet(cfg).eval()
            b = size["batch"]
            z, t, tok = unet_inputs(cfg, b)
            with torch.inference_mode():
                r = medians(size["runs"], lambda u=unet, a=(z, t, tok): u(a[0], a[1], encoder_hidden_states=a[2]),
                            warmup=1)
            row.update({"batch": b, "s_per_forward": r["median_s"],
                        "achieved_gflop_per_s": flops * b / r["median_s"] / 1e9})
        else:
            row["note"] = "not timed on CPU (counted on the meta device); see bench/device.py for the GPU"
        out["presets"][preset] = row
    out["settings"] = {"attention_for_counting": "AttnProcessor (bmm); SDPA is invisible to the counter on CPU",
                       "timing_attention": "AttnProcessor2_0 (SDPA)", "precision": "fp32", "device": "cpu"}
    return out
