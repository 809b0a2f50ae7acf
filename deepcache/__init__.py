"""deepcache: training-free diffusion U-Net acceleration by caching deep features across steps.

DeepCache (Ma et al., arXiv 2312.00858) and Block Caching (Wimbauer et al., arXiv 2312.03209) on
current diffusers, by subclassing rather than forking.
"""

from .block_profile import BlockCacheProfile, profile_blocks
from .block_schedules import BlockCacheSchedule, recompute_steps
from .blocks import block_units

from .branches import BranchLayout, DeepCacheUNetMixin
from .config import DeepCacheConfig
from .helper import DeepCacheSDHelper
from .models import (
    DeepCacheUNet2DConditionModel,
    DeepCacheUNet2DModel,
    DeepCacheUNetSpatioTemporalConditionModel,
)
from .pipelines import (
    DeepCacheDDIMPipeline,
    DeepCacheDDPMPipeline,
    DeepCacheLDMPipeline,
    DeepCacheStableDiffusionImg2ImgPipeline,
    DeepCacheStableDiffusionInpaintPipeline,
    DeepCacheStableDiffusionPipeline,
    DeepCacheStableDiffusionXLImg2ImgPipeline,
    DeepCacheStableDiffusionXLInpaintPipeline,
    DeepCacheStableDiffusionXLPipeline,
    DeepCacheStableVideoDiffusionPipeline,
)
from .schedules import nonuniform_full_steps, uniform_full_steps

__version__ = "0.1.0"
