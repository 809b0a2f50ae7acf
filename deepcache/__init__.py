"""deepcache: training-free diffusion U-Net acceleration by caching deep features across steps.

DeepCache (Ma et al., arXiv 2312.00858) and Block Caching (Wimbauer et al., arXiv 2312.03209) on
current diffusers, by subclassing rather than forking. The product lives in ``schedules`` (settings
and schedules as data), ``models`` (cache-aware U-Nets and the caching mechanisms) and
``pipelines`` (pipelines, the plug-and-play helper, profiling, calibration), with ``tuning`` on top
(which setting to use, measured on the user's pipeline); the instruments in ``evaluation``,
``embedded`` (models shipped with the package) and ``testing`` (tiny random pipelines).
Every public name is importable from here and loads its module on first use.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

_EXPORTS = {
    ".schedules": (
        "BlockCacheProfile",
        "BlockCacheSchedule",
        "CacheRecord",
        "DeepCacheConfig",
        "ScheduleCalibration",
        "nonuniform_full_steps",
        "recompute_steps",
        "uniform_full_steps",
    ),
    ".models": (
        "BranchLayout",
        "ClassEmbedder",
        "DeepCacheControlNetModel",
        "DeepCacheControlNetUnionModel",
        "DeepCacheUNet2DConditionModel",
        "DeepCacheUNet2DModel",
        "DeepCacheUNetMixin",
        "DeepCacheUNetSpatioTemporalConditionModel",
        "block_units",
    ),
    ".pipelines": (
        "CIN256_V2",
        "DeepCacheDDIMPipeline",
        "DeepCacheDDPMPipeline",
        "DeepCacheLDMClassConditionalPipeline",
        "DeepCacheLDMPipeline",
        "DeepCacheSDHelper",
        "DeepCacheStableDiffusionControlNetImg2ImgPipeline",
        "DeepCacheStableDiffusionControlNetInpaintPipeline",
        "DeepCacheStableDiffusionControlNetPipeline",
        "DeepCacheStableDiffusionImg2ImgPipeline",
        "DeepCacheStableDiffusionInpaintPipeline",
        "DeepCacheStableDiffusionPipeline",
        "DeepCacheStableDiffusionXLControlNetImg2ImgPipeline",
        "DeepCacheStableDiffusionXLControlNetInpaintPipeline",
        "DeepCacheStableDiffusionXLControlNetPipeline",
        "DeepCacheStableDiffusionXLControlNetUnionImg2ImgPipeline",
        "DeepCacheStableDiffusionXLControlNetUnionInpaintPipeline",
        "DeepCacheStableDiffusionXLControlNetUnionPipeline",
        "DeepCacheStableDiffusionXLImg2ImgPipeline",
        "DeepCacheStableDiffusionXLInpaintPipeline",
        "DeepCacheStableDiffusionXLPipeline",
        "DeepCacheStableVideoDiffusionPipeline",
        "DeepCacheTextToVideoZeroPipeline",
        "DeepCacheTextToVideoZeroSDXLPipeline",
        "FewStepsWarning",
        "LDM4G_NONUNIFORM",
        "LDMClassConditionalPipeline",
        "calibrate_schedule",
        "convert_ldm_class_conditional",
        "load_compvis_checkpoint",
        "profile_blocks",
    ),
    ".tuning": ("TunedPoint", "TunedSetting", "TuningResult", "tune"),
}

if TYPE_CHECKING:  # what IDEs and type checkers see; tests/test_layout.py keeps it equal to _EXPORTS
    from .models import (
        BranchLayout,
        ClassEmbedder,
        DeepCacheControlNetModel,
        DeepCacheControlNetUnionModel,
        DeepCacheUNet2DConditionModel,
        DeepCacheUNet2DModel,
        DeepCacheUNetMixin,
        DeepCacheUNetSpatioTemporalConditionModel,
        block_units,
    )
    from .pipelines import (
        CIN256_V2,
        DeepCacheDDIMPipeline,
        DeepCacheDDPMPipeline,
        DeepCacheLDMClassConditionalPipeline,
        DeepCacheLDMPipeline,
        DeepCacheSDHelper,
        DeepCacheStableDiffusionControlNetImg2ImgPipeline,
        DeepCacheStableDiffusionControlNetInpaintPipeline,
        DeepCacheStableDiffusionControlNetPipeline,
        DeepCacheStableDiffusionImg2ImgPipeline,
        DeepCacheStableDiffusionInpaintPipeline,
        DeepCacheStableDiffusionPipeline,
        DeepCacheStableDiffusionXLControlNetImg2ImgPipeline,
        DeepCacheStableDiffusionXLControlNetInpaintPipeline,
        DeepCacheStableDiffusionXLControlNetPipeline,
        DeepCacheStableDiffusionXLControlNetUnionImg2ImgPipeline,
        DeepCacheStableDiffusionXLControlNetUnionInpaintPipeline,
        DeepCacheStableDiffusionXLControlNetUnionPipeline,
        DeepCacheStableDiffusionXLImg2ImgPipeline,
        DeepCacheStableDiffusionXLInpaintPipeline,
        DeepCacheStableDiffusionXLPipeline,
        DeepCacheStableVideoDiffusionPipeline,
        DeepCacheTextToVideoZeroPipeline,
        DeepCacheTextToVideoZeroSDXLPipeline,
        FewStepsWarning,
        LDM4G_NONUNIFORM,
        LDMClassConditionalPipeline,
        calibrate_schedule,
        convert_ldm_class_conditional,
        load_compvis_checkpoint,
        profile_blocks,
    )
    from .schedules import (
        BlockCacheProfile,
        BlockCacheSchedule,
        CacheRecord,
        DeepCacheConfig,
        ScheduleCalibration,
        nonuniform_full_steps,
        recompute_steps,
        uniform_full_steps,
    )
    from .tuning import TunedPoint, TunedSetting, TuningResult, tune

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
__version__ = "0.1.0"
