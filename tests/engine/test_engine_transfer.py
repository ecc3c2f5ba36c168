"""Function-preserving RGB -> grey transfer: the 1-channel SD autoencoder and CLIP vision encoder
compute on a grey image what the RGB originals compute on it replicated to RGB (random tiny
SD-layout / CLIP folders saved and loaded locally, compared to 1e-5 relative)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from diffusers.models import AutoencoderKL
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(7)
    root = tmp_path_factory.mktemp("rgb")
    AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1, latent_channels=4,
                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                  norm_num_groups=8, sample_size=16).save_pretrained(root / "vae")
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=16, patch_size=8,
                                                   projection_dim=24)).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(root / "clip")
    return {"vae": root / "vae", "clip": root / "clip"}


def test_grey_autoencoder_matches_sd_on_replicated_rgb(folders: dict[str, Path]) -> None:
    from diffusers.models import AutoencoderKL

    from medm2g_cli.engine.autoencoder import adapt_rgb_autoencoder

    rgb = AutoencoderKL.from_pretrained(str(folders["vae"]), local_files_only=True).eval()
    grey = adapt_rgb_autoencoder(rgb).eval()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        ref = rgb.encode(x.expand(-1, 3, -1, -1)).latent_dist.mean
        got = grey.encode(x).latent_dist.mean
        assert _rel(got, ref) < 1e-5
        z = torch.randn(2, 4, 8, 8)
        ref_img = rgb.decode(z).sample.mean(dim=1, keepdim=True)  # grey = mean of SD's R, G, B
        got_img = grey.decode(z).sample
    assert _rel(got_img, ref_img) < 1e-5


def test_grey_clip_matches_rgb_clip_with_its_processor(folders: dict[str, Path]) -> None:
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from medm2g_cli.engine.encoders import adapt_rgb_vision_encoder
    from medm2g_cli.engine.pretrained import clip_pixel_stats

    rgb = CLIPVisionModelWithProjection.from_pretrained(str(folders["clip"]), local_files_only=True).eval()
    grey = adapt_rgb_vision_encoder(rgb, *clip_pixel_stats(folders["clip"])).eval()
    proc = CLIPImageProcessor.from_pretrained(str(folders["clip"]))
    x = torch.rand(3, 1, 16, 16) * 2 - 1  # the model range
    p01 = ((x + 1) / 2).expand(-1, 3, -1, -1)
    # CLIP's own preprocessing of the replicated image (rescale already done: p01 is in [0, 1])
    pix = proc(images=list(p01.numpy()), do_resize=False, do_center_crop=False, do_rescale=False,
               input_data_format="channels_first", return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = rgb(pixel_values=pix).image_embeds
        got = grey(pixel_values=x).image_embeds
    assert _rel(got, ref) < 1e-5


def test_medm2g_from_pretrained_folders_embeds_and_encodes_like_the_rgb_models(folders: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    """Through the engine: init_from_pretrained + embed_image / encode_image on grey slices."""
    import json
    import shutil

    from diffusers.models import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from medm2g_cli.config import model_preset
    from medm2g_cli.engine import init_from_pretrained

    sd = tmp_path / "sd15"
    shutil.copytree(folders["vae"], sd / "vae")
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                         attention_head_dim=2, norm_num_groups=8).save_pretrained(sd / "unet")
    model = init_from_pretrained(model_preset("tiny", modalities=("ct",)), sd15=sd).eval()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    rgb = AutoencoderKL.from_pretrained(str(folders["vae"]), local_files_only=True).eval()
    with torch.no_grad():
        got = model.encode_image("ct", x) / model.scale_factors["ct"]
        ref = rgb.encode(x.expand(-1, 3, -1, -1)).latent_dist.mean
    assert _rel(got, ref) < 1e-5
    # embed_image feeds the model range; the grey encoder carries CLIP's normalisation itself
    from medm2g_cli.engine.encoders import adapt_rgb_vision_encoder
    from medm2g_cli.engine.pretrained import clip_pixel_stats

    clip = CLIPVisionModelWithProjection.from_pretrained(str(folders["clip"]), local_files_only=True).eval()
    model.parts["image_encoder_ct"] = adapt_rgb_vision_encoder(clip, *clip_pixel_stats(folders["clip"]))
    mean = json.loads((folders["clip"] / "preprocessor_config.json").read_text())["image_mean"]
    assert mean == list(CLIPImageProcessor().image_mean)
    pix = (((x + 1) / 2).expand(-1, 3, -1, -1) - torch.tensor(mean)[None, :, None, None]) \
        / torch.tensor(CLIPImageProcessor().image_std)[None, :, None, None]
    with torch.no_grad():
        got_e = model.embed_image("ct", x, normalize=False)
        ref_e = clip(pixel_values=pix).image_embeds
    assert _rel(got_e, ref_e) < 1e-5
