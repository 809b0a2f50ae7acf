from .base import BlockCacheRun, DeepCachePipelineMixin, DeepCacheRun, call_with_caching, call_with_run
from .ddpm import DeepCacheDDIMPipeline, DeepCacheDDPMPipeline, DeepCacheLDMPipeline
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
