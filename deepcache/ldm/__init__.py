"""LDM-4-G, a model family of its own: class-conditional latent diffusion (CompVis cin256-v2) plain and cached,
its class embedder, and the converter from CompVis checkpoints (diffusers has none of them)."""

from .class_embedder import ClassEmbedder
from .conversion import (
    CIN256_V2,
    convert_ldm_class_conditional,
    load_compvis_checkpoint,
)
from .pipeline import (
    LDM4G_NONUNIFORM,
    DeepCacheLDMClassConditionalPipeline,
    LDMClassConditionalPipeline,
)
