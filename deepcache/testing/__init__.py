"""Tiny random-weight models and pipelines shaped like the real ones, built offline in well under a second,
for tests, benchmarks on CI and trying a script without a download. Their outputs are noise.
"""

from .tiny import (
    TINY_PIPELINES,
    save_tiny_pipeline,
    tiny_animatediff_components,
    tiny_clip_tokenizer,
    tiny_motion_adapter,
    tiny_pipeline,
    tiny_sd_adapter_components,
    tiny_stable_diffusion_components,
    tiny_t2i_adapter,
)
from .tiny_unets import (
    DDPM_UNET,
    LDM4_UNET,
    MOTION_UNET,
    SD15_UNET,
    SDXL_UNET,
    SVD_UNET,
    UNET_CONFIGS,
    tiny_unet,
    tiny_unet_inputs,
)
