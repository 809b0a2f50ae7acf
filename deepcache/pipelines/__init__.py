"""Pipelines: each diffusers pipeline plus caching arguments (its whole signature), the per-call runs,
the plug-and-play helper, Block Caching profiling and schedule calibration. Names load on first use.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    ".calibration": ("calibrate_schedule",),
    ".controlnet": (
        "DeepCacheStableDiffusionControlNetImg2ImgPipeline",
        "DeepCacheStableDiffusionControlNetInpaintPipeline",
        "DeepCacheStableDiffusionControlNetPipeline",
        "DeepCacheStableDiffusionXLControlNetImg2ImgPipeline",
        "DeepCacheStableDiffusionXLControlNetInpaintPipeline",
        "DeepCacheStableDiffusionXLControlNetPipeline",
        "DeepCacheStableDiffusionXLControlNetUnionImg2ImgPipeline",
        "DeepCacheStableDiffusionXLControlNetUnionInpaintPipeline",
        "DeepCacheStableDiffusionXLControlNetUnionPipeline",
    ),
    ".conversion": ("CIN256_V2", "convert_ldm_class_conditional", "load_compvis_checkpoint"),
    ".ddpm": ("DeepCacheDDIMPipeline", "DeepCacheDDPMPipeline", "DeepCacheLDMPipeline"),
    ".helper": ("DeepCacheSDHelper",),
    ".ldm_class_conditional": ("DeepCacheLDMClassConditionalPipeline", "LDM4G_NONUNIFORM", "LDMClassConditionalPipeline"),
    ".mixin": ("DeepCachePipelineMixin",),
    ".profiling": ("profile_blocks",),
    ".runs": ("BlockCacheRun", "DeepCacheRun", "FewStepsWarning", "call_with_caching", "call_with_run", "start_loop"),
    ".stable_diffusion": (
        "DeepCacheStableDiffusionImg2ImgPipeline",
        "DeepCacheStableDiffusionInpaintPipeline",
        "DeepCacheStableDiffusionPipeline",
    ),
    ".stable_diffusion_xl": (
        "DeepCacheStableDiffusionXLImg2ImgPipeline",
        "DeepCacheStableDiffusionXLInpaintPipeline",
        "DeepCacheStableDiffusionXLPipeline",
    ),
    ".stable_video_diffusion": ("DeepCacheStableVideoDiffusionPipeline",),
    ".text_to_video_zero": ("DeepCacheTextToVideoZeroPipeline", "DeepCacheTextToVideoZeroSDXLPipeline"),
}

if TYPE_CHECKING:  # what IDEs and type checkers see; tests/test_layout.py keeps it equal to _EXPORTS
    from .calibration import calibrate_schedule
    from .controlnet import (
        DeepCacheStableDiffusionControlNetImg2ImgPipeline,
        DeepCacheStableDiffusionControlNetInpaintPipeline,
        DeepCacheStableDiffusionControlNetPipeline,
        DeepCacheStableDiffusionXLControlNetImg2ImgPipeline,
        DeepCacheStableDiffusionXLControlNetInpaintPipeline,
        DeepCacheStableDiffusionXLControlNetPipeline,
        DeepCacheStableDiffusionXLControlNetUnionImg2ImgPipeline,
        DeepCacheStableDiffusionXLControlNetUnionInpaintPipeline,
        DeepCacheStableDiffusionXLControlNetUnionPipeline,
    )
    from .conversion import CIN256_V2, convert_ldm_class_conditional, load_compvis_checkpoint
    from .ddpm import DeepCacheDDIMPipeline, DeepCacheDDPMPipeline, DeepCacheLDMPipeline
    from .helper import DeepCacheSDHelper
    from .ldm_class_conditional import LDM4G_NONUNIFORM, DeepCacheLDMClassConditionalPipeline, LDMClassConditionalPipeline
    from .mixin import DeepCachePipelineMixin
    from .profiling import profile_blocks
    from .runs import BlockCacheRun, DeepCacheRun, FewStepsWarning, call_with_caching, call_with_run, start_loop
    from .stable_diffusion import (
        DeepCacheStableDiffusionImg2ImgPipeline,
        DeepCacheStableDiffusionInpaintPipeline,
        DeepCacheStableDiffusionPipeline,
    )
    from .stable_diffusion_xl import (
        DeepCacheStableDiffusionXLImg2ImgPipeline,
        DeepCacheStableDiffusionXLInpaintPipeline,
        DeepCacheStableDiffusionXLPipeline,
    )
    from .stable_video_diffusion import DeepCacheStableVideoDiffusionPipeline
    from .text_to_video_zero import DeepCacheTextToVideoZeroPipeline, DeepCacheTextToVideoZeroSDXLPipeline

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
