"""Tiny random-weight diffusers pipelines, built by the tests (no downloads).

* :func:`build_sd_pipeline`: a StableDiffusionPipeline (UNet2DConditionModel, AutoencoderKL,
  CLIPTextModel, a CLIPTokenizer from a byte-level vocabulary written here, a DDIM scheduler) saved
  with ``save_pretrained`` into a folder that likeness then loads through its real code path.
* :func:`build_inpaint_pipeline`: the same parts with a 9-channel UNet (StableDiffusionInpaintPipeline).
* :func:`build_faceid_weights`: random IP-Adapter FaceID weights (512-d ArcFace input) for that UNet,
  written as one safetensors file in the layout ``load_ip_adapter`` reads.

A few hundred KB each; built in about a second. The images they make are noise: they test the road,
not the model.
"""

from __future__ import annotations

import json
from pathlib import Path

CROSS_ATTENTION_DIM = 16
ARCFACE_DIM = 512


def _byte_characters() -> list[str]:
    """GPT-2/CLIP's printable stand-in character for each of the 256 bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _tokenizer_files(folder: Path) -> None:
    """A CLIP BPE vocabulary with only the byte characters (each character is one token)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_characters()
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


def _parts(in_channels: int = 4):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM,
        norm_num_groups=4,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            hidden_size=CROSS_ATTENTION_DIM,
            intermediate_size=32,
            layer_norm_eps=1e-05,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=514,
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    return unet, vae, text_encoder, scheduler


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    _tokenizer_files(folder)
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def build_sd_pipeline(folder: Path, *, licence: str | None = None, inpaint: bool = False) -> Path:
    """Save a tiny StableDiffusion(Inpaint)Pipeline into ``folder``; ``licence`` goes into a model card."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    unet, vae, text_encoder, scheduler = _parts(in_channels=9 if inpaint else 4)
    tokenizer = _tokenizer(folder.parent / f".{folder.name}-tokenizer")
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    pipe = cls(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    if licence is not None:
        (folder / "README.md").write_text(
            f"---\nlicense: {licence}\n---\n# tiny test model\n", encoding="utf-8"
        )
    return folder


def build_faceid_weights(path: Path, pipeline_folder: Path) -> Path:
    """Random IP-Adapter FaceID weights (ArcFace 512-d in) for the UNet saved in ``pipeline_folder``."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import IPAdapterAttnProcessor
    from diffusers.models.embeddings import IPAdapterFaceIDImageProjection
    from safetensors.torch import save_file

    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet", local_files_only=True)
    tensors: dict[str, torch.Tensor] = {}
    key_id = 1
    channels = unet.config.block_out_channels
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        sd = IPAdapterAttnProcessor(hidden_size=hidden, cross_attention_dim=CROSS_ATTENTION_DIM).state_dict()
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = sd["to_k_ip.0.weight"].contiguous()
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = sd["to_v_ip.0.weight"].contiguous()
        key_id += 2
    projection = IPAdapterFaceIDImageProjection(
        cross_attention_dim=CROSS_ATTENTION_DIM, image_embed_dim=ARCFACE_DIM, mult=1, num_tokens=4
    )
    sd = projection.state_dict()
    for ours, theirs in (
        ("proj.0.weight", "ff.net.0.proj.weight"),
        ("proj.0.bias", "ff.net.0.proj.bias"),
        ("proj.2.weight", "ff.net.2.weight"),
        ("proj.2.bias", "ff.net.2.bias"),
        ("norm.weight", "norm.weight"),
        ("norm.bias", "norm.bias"),
    ):
        tensors[f"image_proj.{ours}"] = sd[theirs].contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
