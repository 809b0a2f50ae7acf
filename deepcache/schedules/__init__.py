"""Schedules and settings as data: pure functions and frozen, validated dataclasses that print and save.
DeepCache full steps, ``DeepCacheConfig``, ``CacheRecord`` and calibrated schedules; Block Caching schedules and the profiles that derive them.
"""

from .block_caching import BlockCacheSchedule, recompute_steps
from .block_profile import BlockCacheProfile
from .calibration import ScheduleCalibration
from .config import DeepCacheConfig
from .deepcache import nonuniform_full_steps, uniform_full_steps
from .record import CacheRecord
