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
