"""Instruments that measure the product: FLOP-ideal and measured speed, quality metrics,
data-parallel sampling, the original DeepCache helper to compare against, and the example scripts' helpers.

Importing this package quiets one transformers notice for the scripts and the demo that use it (see
:func:`quiet_torchvision_notices`); the product itself never imports it, so library logging is untouched.
"""

import logging


class _TorchvisionFallbackNotice(logging.Filter):
    """Drops transformers' notice that an image processor falls back to PIL without torchvision: the
    scripts and the demo never use those processors, and the notice twice per run reads like an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


def quiet_torchvision_notices() -> None:
    """Silences that one notice, on the one transformers logger that emits it (nothing else changes)."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _TorchvisionFallbackNotice) for f in logger.filters):
        logger.addFilter(_TorchvisionFallbackNotice())


quiet_torchvision_notices()  # scripts import this package before any pipeline loads
