"""Schedules as data: pure functions and frozen, validated dataclasses that print, save and plot.
DeepCache full steps, ``CacheRecord``, calibrated schedules and forecasts; Block Caching schedules, profiles; plots.
"""

from .block_caching import BlockCacheSchedule, recompute_steps
from .block_profile import BlockCacheProfile
from .calibration import ScheduleCalibration
from .deepcache import (
    check_positive_int,
    check_pow,
    nonuniform_full_steps,
    uniform_full_steps,
)
from .forecast import (
    FORECAST_RULES,
    ForecastCalibration,
    check_forecast,
    extrapolate,
    forecast_depth,
    linear_gain,
    linear_gains,
    predict,
    scheduler_facts,
)
from .record import CacheRecord
