from .unets import (
    DeepCacheUNet2DConditionModel,
    DeepCacheUNet2DConditionOutput,
    DeepCacheUNet2DModel,
    DeepCacheUNet2DOutput,
    DeepCacheUNetSpatioTemporalConditionModel,
    DeepCacheUNetSpatioTemporalConditionOutput,
)
