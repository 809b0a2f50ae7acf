"""Pipelines: each diffusers pipeline plus caching arguments (its whole signature), and the plug-and-play helper
that adds them to an existing pipeline. Names load on first use."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    ".animatediff": (
        "DeepCacheAnimateDiffControlNetPipeline",
        "DeepCacheAnimateDiffPipeline",
        "DeepCacheAnimateDiffSDXLPipeline",
        "DeepCacheAnimateDiffSparseControlNetPipeline",
        "DeepCacheAnimateDiffVideoToVideoControlNetPipeline",
        "DeepCacheAnimateDiffVideoToVideoPipeline",
        "DeepCachePIAPipeline",
    ),
    ".t2i_adapter": (
        "DeepCacheStableDiffusionAdapterPipeline",
        "DeepCacheStableDiffusionXLAdapterPipeline",
    ),
    ".video": (
        "DeepCacheI2VGenXLPipeline",
        "DeepCacheTextToVideoSDPipeline",
        "DeepCacheVideoToVideoSDPipeline",
    ),
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
    ".ddpm": ("DeepCacheDDIMPipeline", "DeepCacheDDPMPipeline", "DeepCacheLDMPipeline"),
    ".helper": ("DeepCacheSDHelper",),
    ".mixin": ("DeepCachePipelineMixin",),
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
    from .animatediff import (
        DeepCacheAnimateDiffControlNetPipeline,
        DeepCacheAnimateDiffPipeline,
        DeepCacheAnimateDiffSDXLPipeline,
        DeepCacheAnimateDiffSparseControlNetPipeline,
        DeepCacheAnimateDiffVideoToVideoControlNetPipeline,
        DeepCacheAnimateDiffVideoToVideoPipeline,
        DeepCachePIAPipeline,
    )
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
    from .ddpm import DeepCacheDDIMPipeline, DeepCacheDDPMPipeline, DeepCacheLDMPipeline
    from .helper import DeepCacheSDHelper
    from .mixin import DeepCachePipelineMixin
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
    from .t2i_adapter import (
        DeepCacheStableDiffusionAdapterPipeline,
        DeepCacheStableDiffusionXLAdapterPipeline,
    )
    from .text_to_video_zero import (
        DeepCacheTextToVideoZeroPipeline,
        DeepCacheTextToVideoZeroSDXLPipeline,
    )
    from .video import (
        DeepCacheI2VGenXLPipeline,
        DeepCacheTextToVideoSDPipeline,
        DeepCacheVideoToVideoSDPipeline,
    )

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
