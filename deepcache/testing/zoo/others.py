"""The battery's cases whose parts are mostly their own: Kandinsky 2.2, DeepFloyd IF, audio (AudioLDM, AudioLDM2,
MusicLDM), Marigold normals and intrinsics, Stable Cascade and Kolors."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    VQModel,
)
from transformers import (
    ClapTextConfig,
    ClapTextModelWithProjection,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
)

from ..tiny import tiny_stable_diffusion_xl_components
from ..tiny_unets import SD15_UNET, tiny_unet
from .cases import (
    STEPS,
    _generator,
    _image,
    _marigold,
    _marigold_call,
    case,
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
