"""Tiny random-weight models shaped like the real ones, built offline in well under a second.

They have the real block layouts (SD 1.5: 4 levels x 2 layers, 12 branches; SDXL: 3 levels,
9 branches; SVD; DDPM; class-conditional LDM-4-G) with few channels, so tests and demos exercise
every code path that real checkpoints do without downloading anything. Their outputs are noise: they measure speed and
correctness, not image quality.
"""

from __future__ import annotations

import json
import os
import tempfile

import torch
from diffusers import (
    AnimateDiffPipeline,
    AutoencoderKL,
    AutoencoderKLTemporalDecoder,
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    EulerDiscreteScheduler,
    LDMPipeline,
    MotionAdapter,
    StableDiffusionAdapterPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    StableVideoDiffusionPipeline,
    T2IAdapter,
    VQModel,
)
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from ..ldm import ClassEmbedder, LDMClassConditionalPipeline
from .tiny_unets import (
    MOTION_UNET,
    SDXL_UNET,
    tiny_unet,
)


def tiny_clip_tokenizer(directory: str | None = None) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with no merges, written to ``directory`` (a temporary one by default)."""
    directory = directory or tempfile.mkdtemp(prefix="deepcache-tokenizer-")
    characters = (
        [chr(c) for c in range(ord("!"), ord("~") + 1)]
        + [chr(c) for c in range(161, 173)]
        + [chr(c) for c in range(174, 256)]
    )
    characters += [chr(256 + n) for n in range(256 - len(characters))]  # CLIP's bytes_to_unicode alphabet
    tokens = ["<|startoftext|>", "<|endoftext|>"] + characters + [c + "</w>" for c in characters]
    with open(os.path.join(directory, "vocab.json"), "w") as file:
        json.dump({token: index for index, token in enumerate(tokens)}, file)
    with open(os.path.join(directory, "merges.txt"), "w") as file:
        file.write("#version: 0.2\n")
    return CLIPTokenizer(
        os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"), model_max_length=77
    )


def _text_encoder(tokenizer: CLIPTokenizer, hidden_size: int, projection_dim: int | None = None) -> torch.nn.Module:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=projection_dim or hidden_size,
    )
    return (CLIPTextModel(config) if projection_dim is None else CLIPTextModelWithProjection(config)).eval()


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    ).eval()


def tiny_stable_diffusion_components(seed: int = 0, unet_in_channels: int = 4) -> dict:
    """Components of an SD 1.5-shaped pipeline (32 x 32 px images) with random weights.

    ``unet_in_channels=9`` gives the layout of SD's inpainting checkpoints.
    """
    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    text_encoder = _text_encoder(tokenizer, hidden_size=16)
    return {
        "unet": tiny_unet("sd1.5", seed, in_channels=unet_in_channels),
        "vae": _vae(),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
        "requires_safety_checker": False,
    }


def tiny_stable_diffusion_xl_components(seed: int = 0, refiner: bool = False, unet_in_channels: int = 4) -> dict:
    """Components of an SDXL-shaped pipeline (32 x 32 px) with random weights.

    ``refiner=True`` gives the refiner's layout: no first text encoder, aesthetic-score time ids.
    """
    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    text_encoder = None if refiner else _text_encoder(tokenizer, hidden_size=8)
    text_encoder_2 = _text_encoder(tokenizer, hidden_size=8, projection_dim=16)
    time_ids = 5 if refiner else 6  # the refiner replaces the target size with an aesthetic score
    unet = tiny_unet(
        "sdxl",
        seed,
        in_channels=unet_in_channels,
        cross_attention_dim=8 if refiner else 16,
        projection_class_embeddings_input_dim=16 + time_ids * SDXL_UNET["addition_time_embed_dim"],
    )
    components = {
        "unet": unet,
        "vae": _vae(),
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": None if refiner else tokenizer,
        "tokenizer_2": tokenizer,
        "scheduler": EulerDiscreteScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            timestep_spacing="leading",
            steps_offset=1,
        ),
        "image_encoder": None,
        "feature_extractor": None,
        "force_zeros_for_empty_prompt": True,
        "add_watermarker": False,
    }
    if refiner:
        components["requires_aesthetics_score"] = True
    return components


def tiny_clip_vision_config(image_size: int = 224, patch_size: int = 32) -> CLIPVisionConfig:
    """A two-layer CLIP vision encoder's config, 16 wide, projecting to 16 (image encoders of SVD and others)."""
    return CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        projection_dim=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )


def tiny_stable_video_diffusion_components(seed: int = 0) -> dict:
    """Components of a Stable Video Diffusion-shaped pipeline (64 x 64 px frames) with random weights."""
    torch.manual_seed(seed)
    image_encoder = CLIPVisionModelWithProjection(tiny_clip_vision_config()).eval()
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2, latent_channels=4
    ).eval()
    return {
        "unet": tiny_unet("svd", seed),
        "vae": vae,
        "image_encoder": image_encoder,
        "feature_extractor": CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
        "scheduler": EulerDiscreteScheduler(
            prediction_type="v_prediction",
            use_karras_sigmas=True,
            sigma_min=0.002,
            sigma_max=700.0,
            timestep_type="continuous",
            interpolation_type="linear",
        ),
    }


def tiny_ddpm_components(seed: int = 0) -> dict:
    """Components of a DDPM pipeline (16 x 16 px, CIFAR-10's block layout) with random weights."""
    return {"unet": tiny_unet("ddpm", seed), "scheduler": DDPMScheduler(num_train_timesteps=1000)}


def tiny_ldm_components(seed: int = 0) -> dict:
    """Components of an unconditional latent-diffusion pipeline (16 x 16 px) with random weights."""
    torch.manual_seed(seed)
    vqvae = VQModel(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=3,
        norm_num_groups=4,
        num_vq_embeddings=32,
    ).eval()
    return {
        "vqvae": vqvae,
        "unet": tiny_unet("ddpm", seed, sample_size=8),
        "scheduler": DDIMScheduler(num_train_timesteps=1000),
    }


def tiny_ldm_class_conditional_components(seed: int = 0) -> dict:
    """Components of a class-conditional LDM-4-G-shaped pipeline (11 classes, the last the null class; 16 x 16 px)."""
    torch.manual_seed(seed)
    class_embedder = ClassEmbedder(num_classes=11, embedding_dim=16, null_class=10).eval()
    scheduler = DDIMScheduler(
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {
        **tiny_ldm_components(seed),
        "unet": tiny_unet("ldm4", seed),
        "class_embedder": class_embedder,
        "scheduler": scheduler,
    }


def tiny_motion_adapter(seed: int = 0) -> MotionAdapter:
    """AnimateDiff motion modules for the tiny SD 1.5 layout (a motion module after every layer)."""
    torch.manual_seed(seed)
    return MotionAdapter(
        block_out_channels=MOTION_UNET["block_out_channels"],
        motion_layers_per_block=2,
        motion_norm_num_groups=4,
        motion_num_attention_heads=2,
        motion_max_seq_length=8,
    ).eval()


def tiny_animatediff_components(seed: int = 0) -> dict:
    """Components of an AnimateDiff pipeline: the tiny SD 1.5 parts plus motion modules (32 x 32 px frames)."""
    components = tiny_stable_diffusion_components(seed)
    shared = {k: components[k] for k in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")}
    return {**shared, "motion_adapter": tiny_motion_adapter(seed), "feature_extractor": None, "image_encoder": None}


def tiny_t2i_adapter(seed: int = 0, xl: bool = False) -> T2IAdapter:
    """A T2I-Adapter for the tiny SD 1.5 layout (one residual per down block), or with ``xl`` for SDXL's."""
    torch.manual_seed(seed)
    if xl:
        return T2IAdapter(
            in_channels=3, channels=[8, 16, 32], num_res_blocks=1, downscale_factor=4, adapter_type="full_adapter_xl"
        ).eval()
    return T2IAdapter(in_channels=3, channels=[8, 16, 16, 32], num_res_blocks=1, downscale_factor=2).eval()


def tiny_sd_adapter_components(seed: int = 0) -> dict:
    """Components of an SD 1.5 T2I-Adapter pipeline (32 x 32 px)."""
    components = tiny_stable_diffusion_components(seed)
    del components["image_encoder"]
    return {**components, "adapter": tiny_t2i_adapter(seed)}


TINY_PIPELINES = {
    "sd": (StableDiffusionPipeline, tiny_stable_diffusion_components, {}),
    "sd-img2img": (StableDiffusionImg2ImgPipeline, tiny_stable_diffusion_components, {}),
    "sd-inpaint": (StableDiffusionInpaintPipeline, tiny_stable_diffusion_components, {"unet_in_channels": 9}),
    "sdxl": (StableDiffusionXLPipeline, tiny_stable_diffusion_xl_components, {}),
    "sdxl-img2img": (StableDiffusionXLImg2ImgPipeline, tiny_stable_diffusion_xl_components, {}),
    "sdxl-refiner": (StableDiffusionXLImg2ImgPipeline, tiny_stable_diffusion_xl_components, {"refiner": True}),
    "sdxl-inpaint": (StableDiffusionXLInpaintPipeline, tiny_stable_diffusion_xl_components, {"unet_in_channels": 9}),
    "svd": (StableVideoDiffusionPipeline, tiny_stable_video_diffusion_components, {}),
    "ddpm": (DDPMPipeline, tiny_ddpm_components, {}),
    "ddim": (DDIMPipeline, tiny_ddpm_components, {}),
    "ldm": (LDMPipeline, tiny_ldm_components, {}),
    "ldm-cin": (LDMClassConditionalPipeline, tiny_ldm_class_conditional_components, {}),
    "animatediff": (AnimateDiffPipeline, tiny_animatediff_components, {}),
    "sd-adapter": (StableDiffusionAdapterPipeline, tiny_sd_adapter_components, {}),
}


def tiny_pipeline(kind: str, cls: type | None = None, seed: int = 0):
    """A random-weight pipeline of ``kind`` (one of ``TINY_PIPELINES``), as ``cls`` or the diffusers class."""
    if kind not in TINY_PIPELINES:
        raise ValueError(f"`kind` must be one of {sorted(TINY_PIPELINES)}, but got {kind!r}.")
    diffusers_cls, components, options = TINY_PIPELINES[kind]
    pipe = (cls or diffusers_cls)(**components(seed, **options))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_pipeline(kind: str, directory: str, seed: int = 0) -> str:
    """Writes a random-weight pipeline of ``kind`` to ``directory``, loadable by ``from_pretrained``."""
    tiny_pipeline(kind, seed=seed).save_pretrained(directory)
    return directory
