from .base import DeepCachePipelineMixin, DeepCacheRun
from .stable_diffusion import DeepCacheStableDiffusionPipeline
