"""Schedules as data: pure functions and frozen, validated dataclasses that print, save and plot.
DeepCache full steps, ``CacheRecord``, calibrated schedules; Block Caching schedules and profiles; their plots.
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
from .record import CacheRecord
