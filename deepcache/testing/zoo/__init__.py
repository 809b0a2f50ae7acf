"""Tiny random-weight builds of every diffusers pipeline whose denoiser is a U-Net, and one call of each.

For the breadth battery (:mod:`deepcache.testing.battery`). Each build uses the tiny SD-shaped
parts of :mod:`deepcache.testing.tiny` where the pipeline takes them, and otherwise the smallest
components of the pipeline's own kinds; text encoders that need a downloaded tokenizer are
replaced by prompt embeddings in the call. Outputs are noise.
"""

# isort: off
from . import stable_diffusion  # noqa: F401  (each family registers its cases on import, in this order)
from . import others  # noqa: F401

# isort: on
from .cases import CASES, PipelineCase

__all__ = ["CASES", "PipelineCase"]
