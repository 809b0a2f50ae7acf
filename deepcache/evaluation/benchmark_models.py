"""The models the benchmark times: real architectures with random weights (SD 1.5, SDXL, SVD, LDM-4-G, AnimateDiff)
and the embedded trained ones, the inputs of one denoising loop, and whole random-weight pipelines."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

from ..embedded import UNET_CONFIG as EMBEDDED_UNET
from ..embedded import embedded_model_path
from ..embedded.text_to_image import MAX_TOKENS as EMOJI_TOKENS
from ..embedded.text_to_image import UNET_CONFIG as EMOJI_UNET
from ..embedded.text_to_image import embedded_text_to_image_path
from ..models import (
    DeepCacheUNet2DConditionModel,
    DeepCacheUNet2DModel,
    DeepCacheUNetMotionModel,
    DeepCacheUNetSpatioTemporalConditionModel,
)
from ..pipelines import (
    DeepCacheStableDiffusionPipeline,
)
from ..testing import DDPM_UNET, MOTION_UNET, SD15_UNET

# The real architectures' U-Net configs (random weights: speed and FLOPs do not depend on them).
SD15_CONFIG = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768,
    attention_head_dim=8,
)


SDXL_CONFIG = dict(
    sample_size=128,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)


# LDM-4-G (CompVis cin256-v2), as deepcache.convert_ldm_class_conditional configures it: one class token, one head.
LDM4G_CONFIG = dict(
    sample_size=64,
    in_channels=3,
    out_channels=3,
    block_out_channels=(192, 384, 576, 960),
    layers_per_block=2,
    down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
    up_block_types=("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
    cross_attention_dim=512,
    attention_head_dim=1,
)


# AnimateDiff: SD 1.5's U-Net with the v1-5-2 motion adapter's modules (a temporal transformer after every layer and
# in the mid block, 8 heads, up to 32 frames), as UNetMotionModel.from_unet2d builds it.
ANIMATEDIFF_CONFIG = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlockMotion",) * 3 + ("DownBlockMotion",),
    up_block_types=("UpBlockMotion",) + ("CrossAttnUpBlockMotion",) * 3,
    cross_attention_dim=768,
    num_attention_heads=8,
    motion_num_attention_heads=8,
    motion_max_seq_length=32,
    use_motion_mid_block=True,
)


# Stable Video Diffusion (img2vid-xt) is diffusers' default UNetSpatioTemporalConditionModel config.
SVD_CONFIG: dict = {}


@dataclass(frozen=True)
class BenchmarkModel:
    """A U-Net architecture to benchmark and how to feed it: ``family`` picks the conditioning."""

    unet_class: type
    config: dict
    family: str  # "pixel", "sd", "sdxl", "svd" or "motion"
    size: tuple[int, int]  # sample height and width (latent size for latent models)
    description: str
    frames: int = 14
    vae_scale: int = 8  # pixels per latent pixel (1 for pixel-space models)
    tokens: int = 77  # text tokens the U-Net attends to

    def pixels(self, size: tuple[int, int]) -> str:
        return f"{size[0] * self.vae_scale}x{size[1] * self.vae_scale}"


MODELS = {
    "embedded": BenchmarkModel(
        DeepCacheUNet2DModel, EMBEDDED_UNET, "pixel", (32, 32), "embedded digits DDPM (trained weights)", vae_scale=1
    ),
    "emoji": BenchmarkModel(
        DeepCacheUNet2DConditionModel,
        EMOJI_UNET,
        "sd",
        (16, 16),
        "embedded emoji text-to-image (trained weights)",
        vae_scale=2,
        tokens=EMOJI_TOKENS,
    ),
    "sd1.5": BenchmarkModel(
        DeepCacheUNet2DConditionModel, SD15_CONFIG, "sd", (64, 64), "SD 1.5 U-Net (random weights)"
    ),
    "sdxl": BenchmarkModel(
        DeepCacheUNet2DConditionModel, SDXL_CONFIG, "sdxl", (128, 128), "SDXL U-Net (random weights)"
    ),
    "svd": BenchmarkModel(
        DeepCacheUNetSpatioTemporalConditionModel, SVD_CONFIG, "svd", (72, 128), "SVD-XT U-Net (random weights)"
    ),
    "animatediff": BenchmarkModel(
        DeepCacheUNetMotionModel,
        ANIMATEDIFF_CONFIG,
        "motion",
        (64, 64),
        "AnimateDiff U-Net (SD 1.5 + v1-5-2 motion modules, random weights)",
        frames=16,
    ),
    "ldm4": BenchmarkModel(
        DeepCacheUNet2DConditionModel,
        LDM4G_CONFIG,
        "sd",
        (64, 64),
        "LDM-4-G U-Net (cin256-v2, random weights)",
        vae_scale=4,
        tokens=1,
    ),
    "tiny-sd": BenchmarkModel(DeepCacheUNet2DConditionModel, SD15_UNET, "sd", (16, 16), "tiny SD-shaped U-Net (tests)"),
    "tiny-motion": BenchmarkModel(
        DeepCacheUNetMotionModel, MOTION_UNET, "motion", (16, 16), "tiny AnimateDiff-shaped U-Net (tests)", frames=4
    ),
    "tiny-ddpm": BenchmarkModel(
        DeepCacheUNet2DModel, DDPM_UNET, "pixel", (16, 16), "tiny DDPM U-Net (tests)", vae_scale=1
    ),
}


def build_unet(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """The cache-aware U-Net of ``MODELS[name]``: trained weights for the embedded ones (except on meta), random
    otherwise."""
    spec = benchmark_model(name)
    trained = {"embedded": embedded_model_path, "emoji": embedded_text_to_image_path}
    if name in trained and str(device) != "meta":
        unet = spec.unet_class.from_pretrained(trained[name](), subfolder="unet")
    else:
        torch.manual_seed(seed)
        with torch.device(device):  # built where it runs: no copy of random weights across devices
            unet = spec.unet_class(**spec.config)
    unet = unet.to(device)
    return (unet if dtype == torch.float32 else unet.to(dtype)).eval()


def benchmark_model(name: str) -> BenchmarkModel:
    if name not in MODELS:
        raise ValueError(f"`model` must be one of {sorted(MODELS)}, but got {name!r}.")
    return MODELS[name]


@dataclass
class LoopInputs:
    """The noise a loop starts from, and everything else the U-Net takes besides sample and timestep."""

    noise: torch.Tensor
    kwargs: dict
    conditioning: torch.Tensor | None = None  # SVD: image latents concatenated to every sample

    def model_input(self, sample: torch.Tensor) -> torch.Tensor:
        return sample if self.conditioning is None else torch.cat([sample, self.conditioning], dim=2)


def loop_inputs(
    name: str, unet, batch: int, size: tuple[int, int] | None = None, frames: int | None = None, seed: int = 0
) -> LoopInputs:
    """Inputs for ``batch`` samples; conditional models get the doubled batch of classifier-free guidance."""
    spec = benchmark_model(name)
    height, width = size or spec.size
    config = unet.config
    device, dtype = unet.device, unet.dtype
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    if spec.family == "pixel":
        return LoopInputs(randn(batch, config.in_channels, height, width), {})
    rows = 2 * batch
    if spec.family == "svd":
        frames = frames or spec.frames
        latent = config.out_channels
        kwargs = {"encoder_hidden_states": randn(rows, 1, config.cross_attention_dim), "added_time_ids": randn(rows, 3)}
        return LoopInputs(
            randn(rows, frames, latent, height, width),
            kwargs,
            randn(rows, frames, config.in_channels - latent, height, width),
        )
    if spec.family == "motion":  # (batch, channels, frames, height, width); the text repeated per frame
        frames = frames or spec.frames
        kwargs = {
            "encoder_hidden_states": randn(rows, spec.tokens, config.cross_attention_dim).repeat_interleave(frames, 0)
        }
        return LoopInputs(randn(rows, config.in_channels, frames, height, width), kwargs)
    kwargs = {"encoder_hidden_states": randn(rows, spec.tokens, config.cross_attention_dim)}
    if spec.family == "sdxl":
        kwargs["added_cond_kwargs"] = {"text_embeds": randn(rows, 1280), "time_ids": randn(rows, 6)}
    return LoopInputs(randn(rows, config.in_channels, height, width), kwargs)


# Real-size text encoders and autoencoder of the pipelines the GPU check calls whole (random weights).
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)


OPEN_CLIP_BIG_G = dict(
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, projection_dim=1280
)


SD_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
)


def random_pipeline(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """The whole DeepCache pipeline of the real ``"sd1.5"`` or ``"sdxl"`` architecture with random weights, built on
    ``device`` without any download (a byte-level tokenizer; text encoders, VAE and U-Net at their real sizes); or a
    ``"tiny-sd"`` one, for dry runs."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from ..pipelines import DeepCacheStableDiffusionXLPipeline
    from ..testing import tiny_clip_tokenizer, tiny_pipeline

    if name == "tiny-sd":
        return tiny_pipeline("sd", cls=DeepCacheStableDiffusionPipeline).to(device, dtype)
    if name not in ("sd1.5", "sdxl"):
        raise ValueError(f"`name` must be 'sd1.5', 'sdxl' or 'tiny-sd', but got {name!r}.")
    tokenizer = tiny_clip_tokenizer()

    def text_encoder(cls, **sizes):
        config = CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77, **sizes)
        return cls(config)

    scheduler = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    with torch.device(device):
        unet = build_unet(name, device, dtype)
        vae = AutoencoderKL(**SD_VAE, sample_size=512 if name == "sd1.5" else 1024)
        if name == "sd1.5":
            pipe = DeepCacheStableDiffusionPipeline(
                vae=vae,
                text_encoder=text_encoder(CLIPTextModel, **CLIP_L),
                tokenizer=tokenizer,
                unet=unet,
                scheduler=DDIMScheduler(**scheduler, clip_sample=False, set_alpha_to_one=False),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        else:
            pipe = DeepCacheStableDiffusionXLPipeline(
                vae=vae,
                text_encoder=text_encoder(CLIPTextModel, **CLIP_L),
                text_encoder_2=text_encoder(CLIPTextModelWithProjection, **OPEN_CLIP_BIG_G),
                tokenizer=tokenizer,
                tokenizer_2=tokenizer,
                unet=unet,
                scheduler=EulerDiscreteScheduler(**scheduler, timestep_spacing="leading"),
                add_watermarker=False,
            )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)
