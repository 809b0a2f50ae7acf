"""Tiny random-weight builds of every diffusers pipeline whose denoiser is a U-Net, and one call of each.

For the breadth battery (:mod:`deepcache.testing.battery`). Each build uses the tiny SD-shaped
parts of :mod:`deepcache.testing.tiny` where the pipeline takes them, and otherwise the smallest
components of the pipeline's own kinds; text encoders that need a downloaded tokenizer are
replaced by prompt embeddings in the call. Outputs are noise.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import diffusers
import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMInverseScheduler,
    DDIMScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
    UNetMotionModel,
    VQModel,
)
from PIL import Image
from transformers import (
    ClapTextConfig,
    ClapTextModelWithProjection,
    CLIPImageProcessor,
    CLIPVisionModelWithProjection,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
)

from .tiny import (
    MOTION_UNET,
    SD15_UNET,
    tiny_animatediff_components,
    tiny_clip_vision_config,
    tiny_ddpm_components,
    tiny_ldm_components,
    tiny_sd_adapter_components,
    tiny_stable_diffusion_components,
    tiny_stable_diffusion_xl_components,
    tiny_stable_video_diffusion_components,
    tiny_t2i_adapter,
    tiny_unet,
)


@dataclasses.dataclass(frozen=True)
class PipelineCase:
    """One diffusers pipeline in the battery.

    Args:
        name (`str`): the diffusers class name.
        build (`Callable`): returns the plain pipeline, with random weights (seed 0).
        call (`Callable`, *optional*): returns the keyword arguments of one call (a fresh generator each time);
            ``None`` for a pipeline refused at enable whose tiny build cannot run.
        dedicated (`str`, *optional*): the ``deepcache`` pipeline class that extends it, if any.
        loops (`int`, defaults to `1`): denoising loops one call runs.
    """

    name: str
    build: Callable
    call: Callable | None
    dedicated: str | None = None
    loops: int = 1


STEPS = 6
PROMPT = "a red cube"


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _image(size: int = 32, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size, size, 3) * 255).astype(np.uint8))


def _mask(size: int = 32) -> Image.Image:
    return Image.fromarray(np.pad(np.full((size // 2, size // 2), 255, np.uint8), size // 4))


def _text_call(**extra) -> dict:
    return {"prompt": PROMPT, "num_inference_steps": STEPS, "generator": _generator(), "output_type": "np", **extra}


def _sd(in_channels: int = 4, **unet) -> dict:
    components = tiny_stable_diffusion_components()
    if in_channels != 4 or unet:
        components["unet"] = tiny_unet("sd1.5", in_channels=in_channels, **unet)
    return components


def _clean(components: dict, pipeline_class: type) -> dict:
    """The components ``pipeline_class`` takes (the SD builders give a superset)."""
    names = inspect.signature(pipeline_class.__init__).parameters
    return {k: v for k, v in components.items() if k in names}


def _build(name: str, components: Callable) -> Callable:
    def build():
        cls = getattr(diffusers, name)
        return cls(**_clean(components(), cls))

    return build


def _image_encoder() -> CLIPVisionModelWithProjection:
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(tiny_clip_vision_config(image_size=32, patch_size=8)).eval()


def _feature_extractor() -> CLIPImageProcessor:
    return CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})


def _animatediff(**extra) -> dict:
    return {**tiny_animatediff_components(), **extra}


# A ControlNet (or AnimateDiff's SparseCtrl) with the tiny SD 1.5 layout's down path.
CONTROLNET = dict(
    block_out_channels=SD15_UNET["block_out_channels"],
    layers_per_block=2,
    cross_attention_dim=16,
    attention_head_dim=4,
    norm_num_groups=4,
    conditioning_embedding_out_channels=(4, 8),
)


def _controlnet() -> ControlNetModel:
    torch.manual_seed(0)
    return ControlNetModel(**CONTROLNET, down_block_types=SD15_UNET["down_block_types"]).eval()


def _video(frames: int = 2, size: int = 32) -> list[Image.Image]:
    return [_image(size, seed) for seed in range(frames)]


CASES: list[PipelineCase] = []


def case(name: str, components, call, **options) -> None:
    CASES.append(PipelineCase(name, _build(name, components), call, **options))


def _from_unet_controlnet(components: dict) -> dict:
    torch.manual_seed(0)
    net = ControlNetModel.from_unet(components["unet"], conditioning_embedding_out_channels=(8, 16)).eval()
    return {**components, "controlnet": net}


# The pipelines DeepCache has its own classes for since the start
case("StableDiffusionPipeline", _sd, _text_call, dedicated="DeepCacheStableDiffusionPipeline")
case(
    "StableDiffusionImg2ImgPipeline",
    _sd,
    lambda: _text_call(image=_image(), strength=0.6),
    dedicated="DeepCacheStableDiffusionImg2ImgPipeline",
)
case(
    "StableDiffusionInpaintPipeline",
    lambda: _sd(in_channels=9),
    lambda: _text_call(image=_image(), mask_image=_mask(), strength=1.0),
    dedicated="DeepCacheStableDiffusionInpaintPipeline",
)
case(
    "StableDiffusionControlNetPipeline",
    lambda: _from_unet_controlnet(_sd()),
    lambda: _text_call(image=_image()),
    dedicated="DeepCacheStableDiffusionControlNetPipeline",
)
case(
    "StableDiffusionXLPipeline",
    tiny_stable_diffusion_xl_components,
    lambda: _text_call(height=32, width=32),
    dedicated="DeepCacheStableDiffusionXLPipeline",
)
case(
    "StableDiffusionXLImg2ImgPipeline",
    tiny_stable_diffusion_xl_components,
    lambda: _text_call(image=_image(), strength=1.0),
    dedicated="DeepCacheStableDiffusionXLImg2ImgPipeline",
)
case(
    "StableDiffusionXLInpaintPipeline",
    lambda: tiny_stable_diffusion_xl_components(unet_in_channels=9),
    lambda: _text_call(image=_image(), mask_image=_mask(), height=32, width=32, strength=1.0),
    dedicated="DeepCacheStableDiffusionXLInpaintPipeline",
)
case(
    "StableDiffusionXLControlNetPipeline",
    lambda: _from_unet_controlnet(tiny_stable_diffusion_xl_components()),
    lambda: _text_call(image=_image(), height=32, width=32),
    dedicated="DeepCacheStableDiffusionXLControlNetPipeline",
)
case(
    "StableVideoDiffusionPipeline",
    tiny_stable_video_diffusion_components,
    lambda: {
        "image": _image(),
        "num_frames": 2,
        "height": 32,
        "width": 32,
        "decode_chunk_size": 2,
        "num_inference_steps": STEPS,
        "generator": _generator(),
        "output_type": "np",
    },
    dedicated="DeepCacheStableVideoDiffusionPipeline",
)
case(
    "TextToVideoZeroPipeline",
    _sd,
    lambda: {
        "prompt": PROMPT,
        "video_length": 2,
        "num_inference_steps": 10,
        "t0": 4,
        "t1": 6,
        "height": 32,
        "width": 32,
        "generator": _generator(),
        "output_type": "np",
    },
    dedicated="DeepCacheTextToVideoZeroPipeline",
    loops=3,
)
for _name, _components in (
    ("DDPMPipeline", tiny_ddpm_components),
    ("DDIMPipeline", tiny_ddpm_components),
    ("LDMPipeline", tiny_ldm_components),
):
    case(
        _name,
        _components,
        lambda: {"batch_size": 1, "num_inference_steps": STEPS, "generator": _generator(), "output_type": "np"},
        dedicated=f"DeepCache{_name}",
    )

# Stable Diffusion 1.x layouts
case("StableDiffusionPanoramaPipeline", _sd, lambda: _text_call(height=32, width=64))
case("StableDiffusionPAGPipeline", _sd, lambda: _text_call(pag_scale=3.0))
case(
    "StableDiffusionGLIGENPipeline",
    lambda: _sd(attention_type="gated"),
    lambda: _text_call(
        gligen_phrases=["a cube"], gligen_boxes=[[0.1, 0.1, 0.6, 0.6]], gligen_scheduled_sampling_beta=1
    ),
)
case(
    "StableDiffusionInstructPix2PixPipeline",
    lambda: _sd(in_channels=8),
    lambda: _text_call(image=_image()),
)
case(
    "StableDiffusionAdapterPipeline",
    tiny_sd_adapter_components,
    lambda: _text_call(image=_image()),
    dedicated="DeepCacheStableDiffusionAdapterPipeline",
)
case(
    "StableDiffusionXLAdapterPipeline",
    lambda: {**tiny_stable_diffusion_xl_components(), "adapter": tiny_t2i_adapter(xl=True)},
    lambda: _text_call(image=_image(), height=32, width=32),
    dedicated="DeepCacheStableDiffusionXLAdapterPipeline",
)
case("StableDiffusionXLPAGPipeline", tiny_stable_diffusion_xl_components, lambda: _text_call(pag_scale=3.0))
case(
    "StableDiffusionXLInstructPix2PixPipeline",
    lambda: {**tiny_stable_diffusion_xl_components(unet_in_channels=8), "is_cosxl_edit": False},
    lambda: _text_call(image=_image()),
)

# AnimateDiff and PIA: UNetMotionModel
case(
    "AnimateDiffPipeline",
    _animatediff,
    lambda: _text_call(num_frames=2, height=32, width=32),
    dedicated="DeepCacheAnimateDiffPipeline",
)
case(
    "AnimateDiffVideoToVideoPipeline",
    _animatediff,
    lambda: _text_call(video=_video(), strength=0.8, height=32, width=32),
    dedicated="DeepCacheAnimateDiffVideoToVideoPipeline",
)
case(
    "AnimateDiffControlNetPipeline",
    lambda: _animatediff(controlnet=_controlnet()),
    lambda: _text_call(conditioning_frames=_video(), num_frames=2, height=32, width=32),
    dedicated="DeepCacheAnimateDiffControlNetPipeline",
)
case(
    "PIAPipeline",
    lambda: {**_animatediff(), "unet": tiny_unet("sd1.5", in_channels=9)},
    lambda: _text_call(image=_image(), num_frames=2, height=32, width=32),
    dedicated="DeepCachePIAPipeline",
)


# Marigold: one denoising loop per ensemble member batch, no step-end callback
def _marigold_call() -> dict:
    """Two ensemble members at batch size 1: two denoising loops in one call."""
    return {
        "image": _image(),
        "num_inference_steps": STEPS,
        "ensemble_size": 2,
        "processing_resolution": 32,
        "generator": _generator(),
        "output_type": "np",
    }


def _marigold() -> dict:
    components = tiny_stable_diffusion_components()
    return {**components, "unet": tiny_unet("sd1.5", in_channels=8), "prediction_type": "depth"}


case(
    "MarigoldDepthPipeline",
    _marigold,
    _marigold_call,
    loops=2,
)


# Image-conditioned SD 1.x pipelines
def _image_variation() -> dict:
    return {**_sd(), "image_encoder": _image_encoder(), "feature_extractor": _feature_extractor()}


case(
    "StableDiffusionImageVariationPipeline",
    _image_variation,
    lambda: {"image": _image(), "num_inference_steps": STEPS, "generator": _generator(), "output_type": "np"},
)


def _paint_by_example() -> dict:
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder

    torch.manual_seed(0)
    encoder = PaintByExampleImageEncoder(tiny_clip_vision_config(image_size=32, patch_size=8), proj_size=16).eval()
    return {**_sd(in_channels=9), "image_encoder": encoder, "feature_extractor": _feature_extractor()}


case(
    "PaintByExamplePipeline",
    _paint_by_example,
    lambda: {
        "image": _image(),
        "mask_image": _mask(),
        "example_image": _image(seed=1),
        "num_inference_steps": STEPS,
        "generator": _generator(),
        "output_type": "np",
    },
)
case(
    "StableDiffusionDepth2ImgPipeline",
    lambda: {**_sd(in_channels=5), "depth_estimator": None, "feature_extractor": None},
    lambda: _text_call(image=_image(), depth_map=torch.rand(1, 32, 32, generator=_generator()), strength=1.0),
)
case(
    "StableDiffusionDiffEditPipeline",
    lambda: {
        **_sd(),
        "inverse_scheduler": DDIMInverseScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False
        ),
    },
    lambda: _text_call(
        mask_image=torch.ones(1, 16, 16),
        image_latents=torch.randn(1, STEPS, 4, 16, 16, generator=_generator()),
        inpaint_strength=1.0,
    ),
)
case(
    "StableDiffusionUpscalePipeline",
    lambda: {
        **_sd(in_channels=7, num_class_embeds=100),
        "low_res_scheduler": DDPMScheduler(),
        "max_noise_level": 100,
        "watermarker": None,
    },
    lambda: _text_call(image=_image(16), noise_level=20),
)


def _unclip_image() -> dict:
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

    components = _sd(class_embed_type="projection", projection_class_embeddings_input_dim=32)
    return {
        **components,
        "image_encoder": _image_encoder(),
        "feature_extractor": _feature_extractor(),
        "image_normalizer": StableUnCLIPImageNormalizer(embedding_dim=16),
        "image_noising_scheduler": DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
    }


case("StableUnCLIPImg2ImgPipeline", _unclip_image, lambda: _text_call(image=_image()))

# Refused: K-blocks, attention store
case(
    "StableDiffusionLatentUpscalePipeline",
    lambda: {
        **_sd(),
        "unet": _latent_upscaler_unet(),
        "scheduler": EulerDiscreteScheduler(prediction_type="sample"),
    },
    None,
)
case("LEditsPPPipelineStableDiffusion", _sd, None)


def _latent_upscaler_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        act_fn="gelu",
        attention_head_dim=4,
        block_out_channels=(8, 16, 16, 16),
        cross_attention_dim=16,
        down_block_types=("KDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D"),
        in_channels=8,
        mid_block_type=None,
        only_cross_attention=False,
        out_channels=5,
        resnet_time_scale_shift="scale_shift",
        time_embedding_type="fourier",
        timestep_post_act="gelu",
        conv_in_kernel=1,
        conv_out_kernel=1,
        norm_num_groups=4,
        sample_size=8,
        up_block_types=("KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KUpBlock2D"),
    ).eval()


# SDXL layouts
def _sdxl(**extra) -> dict:
    return {**tiny_stable_diffusion_xl_components(), **extra}


case(
    "AnimateDiffSDXLPipeline",
    lambda: {**_sdxl(unet=_sdxl_motion_unet()), "motion_adapter": None},
    lambda: _text_call(num_frames=2, height=32, width=32),
    dedicated="DeepCacheAnimateDiffSDXLPipeline",
)
case("LEditsPPPipelineStableDiffusionXL", _sdxl, None)


def _sdxl_motion_unet() -> UNetMotionModel:
    from .tiny import SDXL_UNET

    torch.manual_seed(0)
    config = {
        k: v for k, v in SDXL_UNET.items() if k not in ("attention_head_dim", "down_block_types", "up_block_types")
    }
    return UNetMotionModel(
        **config,
        down_block_types=("DownBlockMotion", "CrossAttnDownBlockMotion", "CrossAttnDownBlockMotion"),
        up_block_types=("CrossAttnUpBlockMotion", "CrossAttnUpBlockMotion", "UpBlockMotion"),
        num_attention_heads=(2, 4, 8),
        motion_num_attention_heads=2,
        motion_max_seq_length=8,
    ).eval()


# More AnimateDiff
case(
    "AnimateDiffVideoToVideoControlNetPipeline",
    lambda: _animatediff(controlnet=_controlnet()),
    lambda: _text_call(video=_video(), conditioning_frames=_video(), strength=0.8, height=32, width=32),
    dedicated="DeepCacheAnimateDiffVideoToVideoControlNetPipeline",
)


def _sparse_controlnet():
    from diffusers import SparseControlNetModel

    torch.manual_seed(0)
    return SparseControlNetModel(
        **CONTROLNET,
        down_block_types=MOTION_UNET["down_block_types"],
        motion_num_attention_heads=2,
        motion_max_seq_length=8,
        conditioning_channels=3,
        use_simplified_condition_embedding=False,
    ).eval()


case(
    "AnimateDiffSparseControlNetPipeline",
    lambda: _animatediff(controlnet=_sparse_controlnet()),
    lambda: _text_call(conditioning_frames=_video(1), controlnet_frame_indices=[0], num_frames=2, height=32, width=32),
    dedicated="DeepCacheAnimateDiffSparseControlNetPipeline",
)

# Video U-Nets with temporal layers in their blocks
case(
    "TextToVideoSDPipeline",
    lambda: {**_sd(), "unet": tiny_unet("3d")},
    lambda: _text_call(num_frames=2, height=32, width=32),
    dedicated="DeepCacheTextToVideoSDPipeline",
)
case(
    "VideoToVideoSDPipeline",
    lambda: {**_sd(), "unet": tiny_unet("3d")},
    lambda: _text_call(video=np.random.RandomState(0).rand(2, 32, 32, 3).astype(np.float32), strength=0.8),
    dedicated="DeepCacheVideoToVideoSDPipeline",
)
case(
    "I2VGenXLPipeline",
    lambda: {
        **_sd(),
        "unet": tiny_unet("i2vgenxl"),
        "image_encoder": _image_encoder(),
        "feature_extractor": _feature_extractor(),
    },
    lambda: {  # prompt embeddings: diffusers' I2VGen-XL encoder call does not fit transformers 5's CLIPTextModel
        **_text_call(image=_image(), num_frames=2, height=32, width=32, decode_chunk_size=2, prompt=None),
        "prompt_embeds": torch.randn(1, 7, 16, generator=torch.Generator().manual_seed(1)),
        "negative_prompt_embeds": torch.randn(1, 7, 16, generator=torch.Generator().manual_seed(2)),
    },
    dedicated="DeepCacheI2VGenXLPipeline",
)


# Kandinsky 2.2: image embeddings in, MoVQ out
def _movq() -> VQModel:
    torch.manual_seed(0)
    return VQModel(
        block_out_channels=(32, 64),  # its spatial norms have 32 groups
        down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
        up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        num_vq_embeddings=16,
        vq_embed_dim=4,
        layers_per_block=1,
        norm_type="spatial",
    ).eval()


def _kandinsky(in_channels: int = 4, hint: bool = False) -> dict:
    unet = tiny_unet(
        "sd1.5",
        in_channels=in_channels,
        out_channels=8,
        addition_embed_type="image_hint" if hint else "image",
        encoder_hid_dim=16,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=16,
        class_embed_type=None,
        resnet_time_scale_shift="scale_shift",
    )
    scheduler = DDPMScheduler(
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        prediction_type="epsilon",
    )
    return {"unet": unet, "scheduler": scheduler, "movq": _movq()}


def _kandinsky_call(**extra) -> dict:
    generator = _generator()
    return {
        "image_embeds": torch.randn(1, 16, generator=generator),
        "negative_image_embeds": torch.randn(1, 16, generator=generator),
        "height": 32,
        "width": 32,
        "num_inference_steps": STEPS,
        "generator": generator,
        "output_type": "np",
        **extra,
    }


case("KandinskyV22Pipeline", _kandinsky, _kandinsky_call)
case("KandinskyV22Img2ImgPipeline", _kandinsky, lambda: _kandinsky_call(image=_image(), strength=1.0))
case(
    "KandinskyV22InpaintPipeline",
    lambda: _kandinsky(in_channels=9),
    lambda: _kandinsky_call(image=_image(), mask_image=np.ones((32, 32), np.float32)),
)
case(
    "KandinskyV22ControlnetPipeline",
    lambda: _kandinsky(in_channels=8, hint=True),
    lambda: _kandinsky_call(hint=torch.rand(1, 3, 128, 128, generator=_generator())),  # 8x the latent size
)
case(
    "KandinskyV22ControlnetImg2ImgPipeline",
    lambda: _kandinsky(in_channels=8, hint=True),
    lambda: _kandinsky_call(image=_image(), strength=1.0, hint=torch.rand(1, 3, 128, 128, generator=_generator())),
)


# DeepFloyd IF: pixel-space cascade; prompt embeddings stand in for T5
def _if(super_resolution: bool = False) -> dict:
    unet = tiny_unet(
        "sd1.5",
        in_channels=6 if super_resolution else 3,
        out_channels=6,
        sample_size=32,
        encoder_hid_dim=16,
        encoder_hid_dim_type="text_proj",
        cross_attention_dim=16,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        resnet_time_scale_shift="scale_shift",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D") * 2,
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D") * 2,
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        class_embed_type="timestep" if super_resolution else None,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range"
    )
    components = {
        "unet": unet,
        "scheduler": scheduler,
        "tokenizer": None,
        "text_encoder": None,
        "safety_checker": None,
        "feature_extractor": None,
        "watermarker": None,
        "requires_safety_checker": False,
    }
    if super_resolution:
        components["image_noising_scheduler"] = DDPMScheduler(
            num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"
        )
    return components


def _if_call(**extra) -> dict:
    generator = _generator()
    return {
        "prompt_embeds": torch.randn(1, 7, 16, generator=generator),
        "negative_prompt_embeds": torch.randn(1, 7, 16, generator=generator),
        "num_inference_steps": STEPS,
        "generator": generator,
        "output_type": "np",
        **extra,
    }


case("IFPipeline", _if, lambda: _if_call(height=32, width=32))
case(
    "IFSuperResolutionPipeline",
    lambda: _if(super_resolution=True),
    lambda: _if_call(image=torch.rand(1, 3, 16, 16, generator=_generator()), noise_level=20),
)


# Audio: mel-spectrogram latents, text embeddings as class conditioning
def _vocoder() -> SpeechT5HifiGan:
    torch.manual_seed(0)
    return SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=8,
            sampling_rate=16000,
            upsample_initial_channel=16,
            upsample_rates=[2, 2],
            upsample_kernel_sizes=[4, 4],
            resblock_kernel_sizes=[3, 7],
            resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
            normalize_before=False,
        )
    ).eval()


def _audioldm() -> dict:
    unet = tiny_unet(
        "sd1.5",
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=16,
        class_embeddings_concat=True,
        cross_attention_dim=SD15_UNET["block_out_channels"],
    )  # no text: self-attention
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
    ).eval()
    text_encoder = ClapTextModelWithProjection(
        ClapTextConfig(
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=100,
            projection_dim=16,
            projection_hidden_size=16,
        )
    ).eval()
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": None,
        "scheduler": DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False
        ),
        "vocoder": _vocoder(),
    }


def _audio_call() -> dict:
    generator = _generator()
    return {
        "prompt_embeds": torch.randn(1, 16, generator=generator),
        "negative_prompt_embeds": torch.randn(1, 16, generator=generator),
        "audio_length_in_s": 0.064,
        "num_inference_steps": STEPS,
        "generator": generator,
        "output_type": "np",
    }


case("AudioLDMPipeline", _audioldm, _audio_call)
case("MusicLDMPipeline", lambda: {**_audioldm(), "feature_extractor": None}, _audio_call)


def _t5() -> T5EncoderModel:
    torch.manual_seed(0)
    return T5EncoderModel(T5Config(vocab_size=100, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)).eval()


def _gpt2():
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    return GPT2Model(GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2, n_positions=32)).eval()


def _audioldm2() -> dict:
    from diffusers import AudioLDM2Pipeline  # noqa: F401  (the class the case builds)

    components = _audioldm()
    return {
        "vae": components["vae"],
        "unet": tiny_unet("audioldm2"),
        "scheduler": components["scheduler"],
        "vocoder": components["vocoder"],
        "text_encoder": None,
        "text_encoder_2": _t5(),
        "projection_model": None,
        "language_model": _gpt2(),
        "tokenizer": None,
        "tokenizer_2": None,
        "feature_extractor": None,
    }


def _audioldm2_call() -> dict:
    generator = _generator()
    return {
        "prompt_embeds": torch.randn(1, 5, 8, generator=generator),
        "negative_prompt_embeds": torch.randn(1, 5, 8, generator=generator),
        "generated_prompt_embeds": torch.randn(1, 7, 16, generator=generator),
        "negative_generated_prompt_embeds": torch.randn(1, 7, 16, generator=generator),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
        "negative_attention_mask": torch.ones(1, 5, dtype=torch.long),
        "audio_length_in_s": 0.064,
        "num_inference_steps": STEPS,
        "generator": generator,
        "output_type": "np",
    }


case("AudioLDM2Pipeline", _audioldm2, _audioldm2_call)
case(
    "MarigoldNormalsPipeline",
    lambda: {**_marigold(), "prediction_type": "normals"},
    _marigold_call,
    loops=2,
)


def _stable_cascade() -> dict:
    from diffusers import DDPMWuerstchenScheduler, StableCascadeUNet

    torch.manual_seed(0)
    decoder = StableCascadeUNet(
        in_channels=4,
        out_channels=4,
        conditioning_dim=16,
        block_out_channels=(8, 16),
        timestep_ratio_embedding_dim=8,
        patch_size=1,
        num_attention_heads=(2, 2),
        down_num_layers_per_block=(1, 1),
        up_num_layers_per_block=(1, 1),
        down_blocks_repeat_mappers=(1, 1),
        up_blocks_repeat_mappers=(1, 1),
        block_types_per_layer=(("SDCascadeResBlock", "SDCascadeTimestepBlock"),) * 2,
        clip_text_pooled_in_channels=16,
        clip_seq=4,
        effnet_in_channels=16,
        pixel_mapper_in_channels=None,
        self_attn=True,
        dropout=(0.0, 0.0),
        timestep_conditioning_type=("sca",),
    )
    return {
        "decoder": decoder,
        "tokenizer": None,
        "text_encoder": None,
        "scheduler": DDPMWuerstchenScheduler(),
        "vqgan": None,
    }


case("StableCascadeDecoderPipeline", _stable_cascade, None)

case(
    "MarigoldIntrinsicsPipeline",
    lambda: {
        **_marigold(),
        "unet": tiny_unet("sd1.5", in_channels=8, out_channels=4),
        "prediction_type": "intrinsics",
        "target_properties": {"target_names": ["albedo"], "albedo": {"prediction_space": "srgb"}},
    },
    _marigold_call,
    loops=2,
)


def _kolors_call() -> dict:
    generator = _generator()
    return {
        "prompt_embeds": torch.randn(1, 7, 16, generator=generator),
        "pooled_prompt_embeds": torch.randn(1, 16, generator=generator),
        "negative_prompt_embeds": torch.randn(1, 7, 16, generator=generator),
        "negative_pooled_prompt_embeds": torch.randn(1, 16, generator=generator),
        "height": 32,
        "width": 32,
        "num_inference_steps": STEPS,
        "generator": generator,
        "output_type": "np",
    }


case(
    "KolorsPipeline",
    lambda: {**tiny_stable_diffusion_xl_components(), "text_encoder": None, "tokenizer": None},
    _kolors_call,
)
