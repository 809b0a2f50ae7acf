"""Models: the cache-aware U-Nets and ControlNets, and the mechanisms they run, once for every U-Net type.
Views that share weights, DeepCache branches (ControlNets cut with them), Block Caching units, gates, step FLOPs.
"""

from .blocks import block_units
from .branches import BranchLayout, DeepCacheUNetMixin
from .controlnets import (
    CACHE_AWARE_CONTROLNETS,
    DeepCacheControlNetModel,
    DeepCacheControlNetUnionModel,
    cache_aware_controlnets,
    cuttable_controlnets,
)
from .gates import cross_attention_names
from .unets import (
    CACHE_AWARE_UNETS,
    DeepCacheUNet2DConditionModel,
    DeepCacheUNet2DConditionOutput,
    DeepCacheUNet2DModel,
    DeepCacheUNet2DOutput,
    DeepCacheUNetSpatioTemporalConditionModel,
    DeepCacheUNetSpatioTemporalConditionOutput,
    cache_aware_class,
)
