"""After the autoencoders stage the latent scale factors are 1/std of the latents (CoDi scale_by_std)."""

from __future__ import annotations

import json

import torch
from prepared_fixture import make_prepared

from medm2g_cli.data.manifest import load_slice
from medm2g_cli.engine import MedM2G
from medm2g_cli.main import run


def _pretrain(argv):
    try:
        run(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code


def test_autoencoders_stage_calibrates_scale_factors(tmp_path):
    torch.set_num_threads(1)
    data = make_prepared(tmp_path / "prep", n=16, kinds=("xray",))
    _pretrain(["pretrain", "--preset", "tiny", "--data", str(data), "--stages", "autoencoders", "--steps", "2",
               "--batch-size", "4", "-o", str(tmp_path / "run"), "--cpu"])
    meta = json.loads((tmp_path / "run" / "model" / "medm2g.json").read_text())
    sf = meta["scale_factors"]
    assert sf["xray"] != 1.0 and sf["text"] != 1.0
    model = MedM2G.from_pretrained(tmp_path / "run" / "model")
    samples = [json.loads(line) for line in (data / "samples.jsonl").read_text().splitlines()]
    texts = [s["text"] for s in samples if s["split"] == "train"]
    with torch.no_grad():
        z = model.encode_text(texts, sample=False)  # already multiplied by the stored factor
    assert abs(float(z.std()) - 1.0) < 0.05
    x = torch.stack([torch.from_numpy(load_slice(data, s["files"]["xray"])) for s in samples if s["split"] == "train"])[:, None]
    x = torch.nn.functional.interpolate(x, size=(model.image_size, model.image_size), mode="bilinear", antialias=True)
    with torch.no_grad():
        zi = model.encode_image("xray", x, sample=False)
    assert abs(float(zi.std()) - 1.0) < 0.1


def test_calibration_can_be_switched_off(tmp_path):
    data = make_prepared(tmp_path / "prep", n=12, kinds=("xray",))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stage_options:\n  calibrate_scale: false\n")
    _pretrain(["pretrain", "--config", str(cfg), "--preset", "tiny", "--data", str(data), "--stages", "autoencoders",
               "--steps", "1", "--batch-size", "4", "-o", str(tmp_path / "run"), "--cpu"])
    sf = json.loads((tmp_path / "run" / "model" / "medm2g.json").read_text())["scale_factors"]
    assert sf["xray"] == 1.0 and sf["text"] == 1.0


def test_random_crop_is_seeded_and_bounded():
    from medm2g_cli.training.stages import _random_crop

    x = torch.arange(2 * 1 * 10 * 12, dtype=torch.float32).reshape(2, 1, 10, 12)
    assert _random_crop(x, None) is x and _random_crop(x, 10) is x  # nothing to crop
    torch.manual_seed(0)
    a = _random_crop(x, 4)
    torch.manual_seed(0)
    b = _random_crop(x, 4)
    assert a.shape == (2, 1, 4, 4) and torch.equal(a, b)
    for i in range(2):  # each crop is a contiguous window of its own image
        y0, x0 = divmod(int(a[i, 0, 0, 0] - x[i, 0, 0, 0]), 12)
        assert torch.equal(a[i], x[i, :, y0:y0 + 4, x0:x0 + 4])
    # crops prefer content over background (-1): a 4 x 4 patch of content in a 10 x 12 background
    bg = torch.full((64, 1, 10, 12), -1.0)
    bg[:, :, 3:7, 5:9] = 1.0
    got = _random_crop(bg, 4)
    blind = (bg[:, :, :4, :4] > -0.98).float().mean()  # what a fixed corner crop would see
    assert float((got > -0.98).float().mean()) > max(0.3, float(blind))


def test_autoencoders_train_on_crops(tmp_path):
    """`ae_crop` trains the (convolutional) autoencoders on crops and the model still works on whole images."""
    data = make_prepared(tmp_path / "prep", n=12, kinds=("xray",))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stage_options:\n  ae_crop: 16\n  targets: [xray]\n")
    _pretrain(["pretrain", "--config", str(cfg), "--preset", "tiny", "--data", str(data), "--stages", "autoencoders",
               "--steps", "2", "--batch-size", "4", "-o", str(tmp_path / "run"), "--cpu"])
    model = MedM2G.from_pretrained(tmp_path / "run" / "model")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["stage_options"]["ae_crop"] == 16  # recorded with the run
    x = torch.zeros(1, 1, model.image_size, model.image_size)
    with torch.no_grad():
        assert model.decode_image("xray", model.encode_image("xray", x)).shape == x.shape


def test_decoder_only_keeps_the_latents(tmp_path):
    """`ae_decoder_only` changes the decoder, not the encoder or the latent scale (the diffusers stay valid)."""
    torch.set_num_threads(1)
    data = make_prepared(tmp_path / "prep", n=12, kinds=("xray",))
    _pretrain(["pretrain", "--preset", "tiny", "--data", str(data), "--stages", "autoencoders", "--steps", "1",
               "--batch-size", "4", "-o", str(tmp_path / "base"), "--cpu"])
    base = MedM2G.from_pretrained(tmp_path / "base" / "model")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stage_options:\n  ae_decoder_only: true\n  targets: [xray]\n")
    _pretrain(["pretrain", "--config", str(cfg), "--init", str(tmp_path / "base" / "model"), "--data", str(data),
               "--stages", "autoencoders", "--steps", "3", "--batch-size", "4", "--lr", "1e-2",
               "-o", str(tmp_path / "run"), "--cpu"])
    tuned = MedM2G.from_pretrained(tmp_path / "run" / "model")
    old, new = base.parts["vae_xray"].state_dict(), tuned.parts["vae_xray"].state_dict()
    dec = ("decoder.", "post_quant_conv.")
    assert all(torch.equal(v, new[k]) for k, v in old.items() if not k.startswith(dec))
    assert any(not torch.equal(v, new[k]) for k, v in old.items() if k.startswith(dec))
    assert tuned.scale_factors == base.scale_factors
    assert all(torch.equal(v, tuned.parts["text_vae"].state_dict()[k]) for k, v in base.parts["text_vae"].state_dict().items())


def test_decoder_only_refuses_the_text_vae(tmp_path):
    data = make_prepared(tmp_path / "prep", n=12, kinds=("xray",))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stage_options:\n  ae_decoder_only: true\n")
    try:
        run(["pretrain", "--config", str(cfg), "--preset", "tiny", "--data", str(data), "--stages", "autoencoders",
             "--steps", "1", "--batch-size", "4", "-o", str(tmp_path / "run"), "--cpu"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("accepted ae_decoder_only with the text VAE")
    assert not (tmp_path / "run" / "model").exists()
