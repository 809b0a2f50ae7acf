"""Stable Diffusion 1.x and XL, AnimateDiff, Marigold and the video U-Nets: the battery's cases on SD-shaped
parts."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    ControlNetModel,
    DDIMInverseScheduler,
    DDPMScheduler,
    EulerDiscreteScheduler,
    UNet2DConditionModel,
    UNetMotionModel,
)

from ..tiny import (
    tiny_clip_vision_config,
    tiny_ddpm_components,
    tiny_ldm_components,
    tiny_sd_adapter_components,
    tiny_stable_diffusion_xl_components,
    tiny_stable_video_diffusion_components,
    tiny_t2i_adapter,
)
from ..tiny_unets import MOTION_UNET, SDXL_UNET, tiny_unet
from .cases import (
    CONTROLNET,
    PROMPT,
    STEPS,
    _animatediff,
    _controlnet,
    _feature_extractor,
    _generator,
    _image,
    _image_encoder,
    _marigold,
    _marigold_call,
    _mask,
    _sd,
    _text_call,
    _video,
    case,
)


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
