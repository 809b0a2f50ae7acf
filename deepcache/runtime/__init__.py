"""Runtime: what one cached pipeline call does, one module per technique, composed for the call and dropped after it.
``base`` (the run and its hooks), ``deepcache``, ``adaptive``, ``block_caching``, ``gating``, ``compose`` (registry).

A new technique is one module here plus one entry in ``compose.TECHNIQUES``. The module provides:

1. a frozen config dataclass that validates itself in ``__post_init__`` (``ValueError``/``TypeError``
   naming the argument) and has an ``enabled`` property; its fields, defaults, annotations and the
   ``Args:`` of its docstring become keyword-only arguments of every DeepCache pipeline ``__call__``
   (with ``inspect.signature`` and ``help()``), of ``DeepCacheSDHelper.set_params`` and of
   ``TunedSetting`` - nothing else lists them;
2. a :class:`~deepcache.runtime.base.LoopRun` subclass for one denoising loop: ``before_unet`` adds
   the U-Net's arguments for this call, ``after_unet`` takes the technique's extra output by name
   (:func:`deepcache.models.take_extra`) and calls ``next_call()``; a run that changes the batch
   also implements ``reshape_call``/``reshape_output``; a run that cuts the ControlNet implements
   ``before_controlnet``; a run with something to show implements ``record()``;
3. ``TECHNIQUE = Technique(name, config, make_run, record=None)``, where ``make_run(pipeline, config,
   defaults)`` builds the run, refusing a pipeline it cannot serve before any denoising.

A technique that needs the U-Net to compute something new adds its mechanism under
``deepcache.models`` (a view over the parent's own forward, an argument of
``DeepCacheUNetMixin.forward`` and a name in ``models.outputs.EXTRA_OUTPUTS``).
"""

from .adaptive import AdaptiveDeepCacheRun, relative_l1, schedule_weights, step_weights
from .auto_forecast import AutoForecast, LinearForecastWarning, auto_forecast
from .base import (
    LoopRun,
    Technique,
    branch_layout,
    call_with_run,
    diffusers_class,
    enabled_helper,
    pipeline_unet_cache_aware,
    refuse_helper,
    unet_sample,
    unet_timestep,
    unwrap,
)
from .block_caching import BlockCacheConfig, BlockCacheRun
from .compose import (
    TECHNIQUES,
    SeveralLoopsMixin,
    caching_configs,
    caching_fields,
    caching_kwargs,
    call_with_caching,
    start_loop,
)
from .deepcache import DeepCacheConfig, DeepCacheRun, FewStepsWarning
from .gating import GateRun, GateStepWarning, GatingConfig
