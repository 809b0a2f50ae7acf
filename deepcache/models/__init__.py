"""Models: the cache-aware U-Nets and ControlNets, the mechanisms they run (once for every U-Net type), and the class
embedder class-conditional LDM needs. Views sharing weights, branches, Block Caching units, gates, step FLOPs."""

from .blocks import block_units
from .branches import BranchLayout, DeepCacheUNetMixin
from .class_embedder import ClassEmbedder
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
