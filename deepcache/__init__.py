"""deepcache: training-free diffusion U-Net acceleration by caching deep features across steps.

DeepCache (Ma et al., arXiv 2312.00858) and Block Caching (Wimbauer et al., arXiv 2312.03209) on
current diffusers, by subclassing rather than forking. The product, in the order imports flow:
``schedules`` (schedules as data), ``models`` (cache-aware U-Nets and the caching mechanisms),
``runtime`` (one module per technique: its setting and the run of one call), ``measurement``
(FLOPs, profiles, calibration), ``pipelines`` (pipelines and the plug-and-play helper), ``ldm``
(the LDM-4-G family), ``tuning`` (which setting to use, measured on the user's pipeline); the
instruments in ``evaluation``, ``embedded`` (models shipped with the package) and ``testing``
(tiny random pipelines). Every public name is importable from here and loads its module on first use.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

_EXPORTS = {
    ".schedules": (
        "BlockCacheProfile",
        "BlockCacheSchedule",
        "CacheRecord",
        "FORECAST_RULES",
        "ForecastCalibration",
        "ScheduleCalibration",
        "nonuniform_full_steps",
        "recompute_steps",
        "uniform_full_steps",
    ),
    ".models": (
        "BranchLayout",
        "DeepCacheControlNetModel",
        "DeepCacheControlNetUnionModel",
        "DeepCacheAudioLDM2UNet2DConditionModel",
        "DeepCacheI2VGenXLUNet",
        "DeepCacheUNet2DConditionModel",
        "DeepCacheUNet2DModel",
        "DeepCacheUNet3DConditionModel",
        "DeepCacheUNetMixin",
        "DeepCacheUNetMotionModel",
        "DeepCacheUNetSpatioTemporalConditionModel",
        "block_units",
    ),
    ".runtime": (
        "AutoForecast",
        "BlockCacheConfig",
        "DeepCacheConfig",
        "FewStepsWarning",
        "GateStepWarning",
        "GatingConfig",
        "LinearForecastWarning",
        "TECHNIQUES",
        "Technique",
        "auto_forecast",
    ),
    ".measurement": (
        "calibrate_forecast",
        "calibrate_schedule",
        "profile_blocks",
    ),
    ".pipelines": (
        "DeepCacheAnimateDiffControlNetPipeline",
        "DeepCacheAnimateDiffPipeline",
        "DeepCacheAnimateDiffSDXLPipeline",
        "DeepCacheAnimateDiffSparseControlNetPipeline",
        "DeepCacheAnimateDiffVideoToVideoControlNetPipeline",
        "DeepCacheAnimateDiffVideoToVideoPipeline",
        "DeepCacheI2VGenXLPipeline",
        "DeepCachePIAPipeline",
        "DeepCacheStableDiffusionAdapterPipeline",
        "DeepCacheStableDiffusionXLAdapterPipeline",
        "DeepCacheTextToVideoSDPipeline",
        "DeepCacheVideoToVideoSDPipeline",
        "DeepCacheDDIMPipeline",
        "DeepCacheDDPMPipeline",
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
    ),
    ".ldm": (
        "CIN256_V2",
        "ClassEmbedder",
        "DeepCacheLDMClassConditionalPipeline",
        "LDM4G_NONUNIFORM",
        "LDMClassConditionalPipeline",
        "convert_ldm_class_conditional",
        "load_compvis_checkpoint",
    ),
    ".tuning": (
        "TunedPoint",
        "TunedSetting",
        "TunedSettingWarning",
        "TuningResult",
        "tune",
    ),
}

if TYPE_CHECKING:  # what IDEs and type checkers see; tests/test_layout.py keeps it equal to _EXPORTS
    from .ldm import (
        CIN256_V2,
        LDM4G_NONUNIFORM,
        ClassEmbedder,
        DeepCacheLDMClassConditionalPipeline,
        LDMClassConditionalPipeline,
        convert_ldm_class_conditional,
        load_compvis_checkpoint,
    )
    from .measurement import (
        calibrate_forecast,
        calibrate_schedule,
        profile_blocks,
    )
    from .models import (
        BranchLayout,
        DeepCacheAudioLDM2UNet2DConditionModel,
        DeepCacheControlNetModel,
        DeepCacheControlNetUnionModel,
        DeepCacheI2VGenXLUNet,
        DeepCacheUNet2DConditionModel,
        DeepCacheUNet2DModel,
        DeepCacheUNet3DConditionModel,
        DeepCacheUNetMixin,
        DeepCacheUNetMotionModel,
        DeepCacheUNetSpatioTemporalConditionModel,
        block_units,
    )
    from .pipelines import (
        DeepCacheAnimateDiffControlNetPipeline,
        DeepCacheAnimateDiffPipeline,
        DeepCacheAnimateDiffSDXLPipeline,
        DeepCacheAnimateDiffSparseControlNetPipeline,
        DeepCacheAnimateDiffVideoToVideoControlNetPipeline,
        DeepCacheAnimateDiffVideoToVideoPipeline,
        DeepCacheDDIMPipeline,
        DeepCacheDDPMPipeline,
        DeepCacheI2VGenXLPipeline,
        DeepCacheLDMPipeline,
        DeepCachePIAPipeline,
        DeepCacheSDHelper,
        DeepCacheStableDiffusionAdapterPipeline,
        DeepCacheStableDiffusionControlNetImg2ImgPipeline,
        DeepCacheStableDiffusionControlNetInpaintPipeline,
        DeepCacheStableDiffusionControlNetPipeline,
        DeepCacheStableDiffusionImg2ImgPipeline,
        DeepCacheStableDiffusionInpaintPipeline,
        DeepCacheStableDiffusionPipeline,
        DeepCacheStableDiffusionXLAdapterPipeline,
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
        DeepCacheTextToVideoSDPipeline,
        DeepCacheTextToVideoZeroPipeline,
        DeepCacheTextToVideoZeroSDXLPipeline,
        DeepCacheVideoToVideoSDPipeline,
    )
    from .runtime import (
        TECHNIQUES,
        AutoForecast,
        BlockCacheConfig,
        DeepCacheConfig,
        FewStepsWarning,
        GateStepWarning,
        GatingConfig,
        LinearForecastWarning,
        Technique,
        auto_forecast,
    )
    from .schedules import (
        FORECAST_RULES,
        BlockCacheProfile,
        BlockCacheSchedule,
        CacheRecord,
        ForecastCalibration,
        ScheduleCalibration,
        nonuniform_full_steps,
        recompute_steps,
        uniform_full_steps,
    )
    from .tuning import (
        TunedPoint,
        TunedSetting,
        TunedSettingWarning,
        TuningResult,
        tune,
    )

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
__version__ = "0.1.0"
