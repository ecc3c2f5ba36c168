"""`medm2g weights init|inspect|verify|merge`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medm2g_cli.main import run


def _run(args: list[str]) -> int:
    try:
        run(args)
    except SystemExit as ex:
        return int(ex.code or 0)
    return 0


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("w") / "tiny"
    assert _run(["weights", "init", "--preset", "tiny", "-o", str(out), "--modalities", "text,xray", "--seed", "3"]) == 0
    return out


def test_init_inspect_verify(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _run(["weights", "verify", str(folder)]) == 0
    assert _run(["weights", "inspect", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["modalities"] == ["text", "xray"] and info["preset"] == "tiny"
    comps = info["parameters"]["components"]
    assert set(comps) >= {"vae_xray", "unet_xray", "image_encoder_xray", "text_vae", "unet_text", "text_encoder"}
    assert "unet_ct" not in comps
    assert info["parameters"]["total"] == sum(comps.values())
    assert "unet_xray/diffusion_pytorch_model.safetensors" in info["sha256"]
    assert _run(["weights", "inspect", str(folder)]) == 0  # the rich table renders


def test_existing_output_needs_overwrite(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _run(["weights", "init", "--preset", "tiny", "-o", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: output '{folder}' already exists — pass --overwrite to replace it"]


def test_verify_reports_tampering(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    with open(bad / "text_encoder" / "config.json", "a") as f:
        f.write(" ")
    (bad / "unet_text" / "config.json").unlink()
    capsys.readouterr()
    assert _run(["weights", "verify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mismatched: text_encoder/config.json" in err and "missing: unet_text/config.json" in err


def test_inspect_full_preset_on_meta(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _run(["weights", "inspect", "--preset", "full", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    comps = info["parameters"]["components"]
    for m in ("xray", "ct", "mri"):
        # Stable Diffusion 1.5: UNet 859.52M, KL-f8 autoencoder 83.65M (RGB; ours is 1-channel)
        assert abs(comps[f"unet_{m}"] - 859_520_964) / 859_520_964 < 0.01
        assert abs(comps[f"vae_{m}"] - 83_653_863) / 83_653_863 < 0.01
        assert abs(info["parameters"]["diffusers"][m] - 943e6) / 943e6 < 0.01
    assert info["config"]["image"]["block_out_channels"] == [320, 640, 1280, 1280]


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _run(["weights", "inspect"]) == 2
    assert _run(["weights", "init", "--preset", "huge", "-o", str(tmp_path / "x")]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert _run(["weights", "verify", str(tmp_path)]) == 2
    assert "not a medm2g model folder" in capsys.readouterr().err


def test_command_module_is_light() -> None:
    code = "import sys, medm2g_cli.commands.weights; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _trained_copy(folder: Path, out: Path, components: tuple[str, ...], scale: float | None = None) -> Path:
    """``folder`` with ``components`` changed, as a run that trained only them would leave it."""
    import torch

    from medm2g_cli.engine import MedM2G

    m = MedM2G.from_pretrained(folder)
    with torch.no_grad():
        for c in components:
            for p in m.parts[c].parameters():
                p.add_(0.01)
    if scale is not None:
        m.scale_factors["xray"] = scale
    m.save_pretrained(out)
    return out


def test_merge_takes_components_and_guards_latents(folder: Path, tmp_path: Path) -> None:
    import torch

    from medm2g_cli.engine import MedM2G

    unet_run = _trained_copy(folder, tmp_path / "unet_run", ("unet_xray",))
    ae_run = _trained_copy(folder, tmp_path / "ae_run", ("vae_xray", "unet_xray"), scale=0.5)
    out = tmp_path / "merged"
    assert _run(["weights", "merge", str(folder), "--take", f"unet_xray={unet_run}", "-o", str(out)]) == 0
    assert _run(["weights", "verify", str(out)]) == 0
    merged, base, src = (MedM2G.from_pretrained(p) for p in (out, folder, unet_run))
    sd = merged.parts["unet_xray"].state_dict()
    assert all(torch.equal(v, src.parts["unet_xray"].state_dict()[k]) for k, v in sd.items())
    assert all(torch.equal(v, base.parts["unet_text"].state_dict()[k]) for k, v in merged.parts["unet_text"].state_dict().items())
    # a diffuser trained on other latents is refused unless its autoencoder (and scale) come along
    refused = tmp_path / "refused"
    assert _run(["weights", "merge", str(folder), "--take", f"unet_xray={ae_run}", "-o", str(refused)]) == 2
    assert not refused.exists()
    both = tmp_path / "both"
    assert _run(["weights", "merge", str(folder), "--take", f"unet_xray={ae_run}", "--take", f"vae_xray={ae_run}",
                 "-o", str(both)]) == 0
    assert MedM2G.from_pretrained(both).scale_factors["xray"] == 0.5
    # bad --take, unknown component, existing output
    assert _run(["weights", "merge", str(folder), "--take", "unet_xray", "-o", str(tmp_path / "x")]) == 2
    assert _run(["weights", "merge", str(folder), "--take", f"unet_ct={unet_run}", "-o", str(tmp_path / "y")]) == 2
    assert _run(["weights", "merge", str(folder), "--take", f"unet_xray={unet_run}", "-o", str(out)]) == 2


def test_merge_accepts_a_decoder_trained_alone(folder: Path, tmp_path: Path) -> None:
    """A decoder fine-tuned alone leaves the latents, so the diffusers, valid; a new encoder does not."""
    import torch

    from medm2g_cli.engine import MedM2G

    m = MedM2G.from_pretrained(folder)
    with torch.no_grad():
        for n, p in m.parts["vae_xray"].named_parameters():
            if n.startswith(("decoder.", "post_quant_conv.")):
                p.add_(0.01)
    dec = m.save_pretrained(tmp_path / "dec_run")
    enc = _trained_copy(folder, tmp_path / "enc_run", ("vae_xray",))
    out = tmp_path / "merged"
    assert _run(["weights", "merge", str(folder), "--take", f"vae_xray={dec}", "-o", str(out)]) == 0
    got = MedM2G.from_pretrained(out).parts["vae_xray"].state_dict()
    assert all(torch.equal(v, m.parts["vae_xray"].state_dict()[k]) for k, v in got.items())
    # the other way round: the base's unet_xray next to a new encoder is refused, nothing written
    assert _run(["weights", "merge", str(folder), "--take", f"vae_xray={enc}", "-o", str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no").exists()
    # and a diffuser whose decoder-only sibling is the base: taken
    unet_run = _trained_copy(dec, tmp_path / "unet_run", ("unet_xray",))
    assert _run(["weights", "merge", str(folder), "--take", f"unet_xray={unet_run}", "-o", str(tmp_path / "u")]) == 0
