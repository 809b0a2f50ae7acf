"""Models: the cache-aware U-Nets and ControlNets and the mechanisms they run, once for every U-Net type.
Weight-sharing views, branches, Block Caching units, cross-attention gates, and their extra outputs by name."""

from .blocks import block_units
from .branches import DeepCacheUNetMixin
from .controlnets import (
    CACHE_AWARE_CONTROLNETS,
    DeepCacheControlNetModel,
    DeepCacheControlNetUnionModel,
    cache_aware_controlnets,
    cuttable_controlnets,
)
from .gates import cross_attention_names
from .layout import BranchLayout
from .outputs import EXTRA_OUTPUTS, take_extra
from .unets import (
    CACHE_AWARE_UNETS,
    DeepCacheAudioLDM2UNet2DConditionModel,
    DeepCacheI2VGenXLUNet,
    DeepCacheUNet2DConditionModel,
    DeepCacheUNet2DConditionOutput,
    DeepCacheUNet2DModel,
    DeepCacheUNet2DOutput,
    DeepCacheUNet3DConditionModel,
    DeepCacheUNet3DConditionOutput,
    DeepCacheUNetMotionModel,
    DeepCacheUNetMotionOutput,
    DeepCacheUNetSpatioTemporalConditionModel,
    DeepCacheUNetSpatioTemporalConditionOutput,
    cache_aware,
    cache_aware_class,
)
from .views import VIEWS_ATTRIBUTE
