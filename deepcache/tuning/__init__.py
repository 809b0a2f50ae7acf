"""Tuning: measures settings on the user's own pipeline and inputs, and picks the best for a target
speedup, FLOP budget or fidelity (the Pareto front, the pick, its check on held-out inputs).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    ".families": ("FAMILIES",),
    ".request": ("TuningRequest",),
    ".result": ("TunedPoint", "TuningResult"),
    ".search": ("tune",),
    ".setting": ("TunedSetting", "TunedSettingWarning"),
}

if TYPE_CHECKING:  # what IDEs and type checkers see; tests/test_layout.py keeps it equal to _EXPORTS
    from .families import FAMILIES
    from .request import TuningRequest
    from .result import TunedPoint, TuningResult
    from .search import tune
    from .setting import TunedSetting, TunedSettingWarning

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
