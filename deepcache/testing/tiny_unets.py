"""Tiny random-weight U-Nets of every supported type, with the real block layouts, and random inputs for one forward."""

from __future__ import annotations

import torch
from diffusers import (
    I2VGenXLUNet,
    UNet2DConditionModel,
    UNet2DModel,
    UNet3DConditionModel,
    UNetMotionModel,
    UNetSpatioTemporalConditionModel,
)
from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel

SD15_UNET = dict(
    sample_size=16,
    layers_per_block=2,
    block_out_channels=(8, 16, 16, 32),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=16,
    attention_head_dim=4,
    norm_num_groups=4,
)


SDXL_UNET = dict(
    sample_size=16,
    layers_per_block=2,
    block_out_channels=(8, 16, 32),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 1, 2),
    cross_attention_dim=16,
    attention_head_dim=(2, 4, 8),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=4,
    projection_class_embeddings_input_dim=16 + 6 * 4,  # pooled text embedding + 6 time ids
    norm_num_groups=4,
)


SVD_UNET = dict(
    sample_size=8,
    in_channels=8,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(32, 32, 64, 64),  # its resnets use 32 norm groups
    down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    cross_attention_dim=16,
    num_attention_heads=(2, 2, 4, 4),
    addition_time_embed_dim=4,
    projection_class_embeddings_input_dim=3 * 4,
)


DDPM_UNET = dict(
    sample_size=16,
    in_channels=3,
    out_channels=3,
    layers_per_block=2,
    block_out_channels=(8, 16, 16, 32),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=4,
    norm_num_groups=4,
)


LDM4_UNET = dict(  # CompVis cin256-v2's layout: 4 levels, attention below the first, one head, 3 latent channels
    sample_size=8,
    in_channels=3,
    out_channels=3,
    layers_per_block=2,
    block_out_channels=(8, 16, 24, 40),
    down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
    up_block_types=("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
    cross_attention_dim=16,
    attention_head_dim=1,
    norm_num_groups=4,
)


MOTION_UNET = dict(  # AnimateDiff: SD 1.5's layout with a motion module after every layer
    sample_size=16,
    layers_per_block=2,
    block_out_channels=(8, 16, 16, 32),
    down_block_types=("CrossAttnDownBlockMotion",) * 3 + ("DownBlockMotion",),
    up_block_types=("UpBlockMotion",) + ("CrossAttnUpBlockMotion",) * 3,
    cross_attention_dim=16,
    num_attention_heads=2,
    norm_num_groups=4,
    motion_num_attention_heads=2,
    motion_max_seq_length=8,
)


VIDEO_3D_UNET = dict(  # ModelScope text-to-video and I2VGen-XL: temporal convolutions and attentions per layer
    sample_size=16,
    layers_per_block=2,
    block_out_channels=(8, 16, 16, 32),
    down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
    up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
    cross_attention_dim=16,
    attention_head_dim=4,
    norm_num_groups=4,
)


AUDIOLDM2_UNET = dict(  # three attentions per layer (self, then GPT-2 and T5 conditioning)
    sample_size=16,
    layers_per_block=2,
    block_out_channels=(8, 16, 16, 32),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=((None, 16, 8),) * 4,  # per block: a self-attention, then one per encoder
    attention_head_dim=4,
    norm_num_groups=4,
)


UNET_CONFIGS = {
    "sd1.5": (UNet2DConditionModel, SD15_UNET),
    "sdxl": (UNet2DConditionModel, SDXL_UNET),
    "svd": (UNetSpatioTemporalConditionModel, SVD_UNET),
    "ddpm": (UNet2DModel, DDPM_UNET),
    "ldm4": (UNet2DConditionModel, LDM4_UNET),
    "motion": (UNetMotionModel, MOTION_UNET),
    "3d": (UNet3DConditionModel, VIDEO_3D_UNET),
    "i2vgenxl": (I2VGenXLUNet, VIDEO_3D_UNET),
    "audioldm2": (AudioLDM2UNet2DConditionModel, AUDIOLDM2_UNET),
}


def tiny_unet(kind: str, seed: int = 0, cls: type | None = None, **overrides) -> torch.nn.Module:
    """A random U-Net of ``kind`` (one of ``UNET_CONFIGS``), as ``cls`` or the diffusers class."""
    if kind not in UNET_CONFIGS:
        raise ValueError(f"`kind` must be one of {sorted(UNET_CONFIGS)}, but got {kind!r}.")
    diffusers_cls, config = UNET_CONFIGS[kind]
    torch.manual_seed(seed)
    return (cls or diffusers_cls)(**{**config, **overrides}).eval()


def tiny_unet_inputs(kind: str, batch: int = 2, seed: int = 1) -> tuple[tuple, dict]:
    """Random ``(args, kwargs)`` for one forward of ``tiny_unet(kind)``."""
    generator = torch.Generator().manual_seed(seed)
    _, config = UNET_CONFIGS[kind]
    size = config["sample_size"]
    if kind == "svd":
        sample = torch.randn(batch, 2, config["in_channels"], size, size, generator=generator)
        return (sample, torch.tensor(0.5), torch.randn(batch, 1, 16, generator=generator)), {
            "added_time_ids": torch.randn(batch, 3, generator=generator)
        }
    if kind in ("motion", "3d", "i2vgenxl"):  # (batch, channels, frames, height, width)
        sample = torch.randn(batch, 4, 2, size, size, generator=generator)
        text = torch.randn(batch * (2 if kind == "motion" else 1), 7, 16, generator=generator)  # per frame for motion
        if kind == "i2vgenxl":
            image = torch.randn(batch, 4, 2, size, size, generator=generator)
            return (sample, torch.tensor(500)), {
                "fps": torch.tensor([8] * batch),
                "image_latents": image,
                "image_embeddings": torch.randn(batch, 16, generator=generator),
                "encoder_hidden_states": text,
            }
        return (sample, torch.tensor(500), text), {}
    if kind == "audioldm2":
        return (torch.randn(batch, 4, size, size, generator=generator), torch.tensor(500)), {
            "encoder_hidden_states": torch.randn(batch, 7, 16, generator=generator),
            "encoder_hidden_states_1": torch.randn(batch, 5, 8, generator=generator),
        }
    if kind == "ddpm":
        return (torch.randn(batch, 3, size, size, generator=generator), torch.tensor(500)), {}
    args = (
        torch.randn(batch, 4, size, size, generator=generator),
        torch.tensor(500),
        torch.randn(batch, 7, 16, generator=generator),
    )
    if kind == "sdxl":
        return args, {
            "added_cond_kwargs": {
                "text_embeds": torch.randn(batch, 16, generator=generator),
                "time_ids": torch.randn(batch, 6, generator=generator),
            }
        }
    return args, {}
