from .base import DeepCachePipelineMixin, DeepCacheRun, call_with_deepcache
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
