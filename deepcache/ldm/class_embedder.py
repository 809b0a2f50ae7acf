"""The class-label conditioning of class-conditional latent diffusion (CompVis LDM-4-G, ``cin256-v2``).

CompVis' ``ClassEmbedder`` is one learned table: a label becomes a single token the U-Net attends
to by cross-attention, and one extra row (the null class) is the unconditional input of
classifier-free guidance. diffusers has no such component, so it is a model of its own here. Saved
pipelines record it as ``["deepcache.ldm.class_embedder", "ClassEmbedder"]``: diffusers loads it
from this module once ``deepcache`` is imported.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config


class ClassEmbedder(ModelMixin, ConfigMixin):
    """A class label -> one cross-attention token, ``(batch, 1, embedding_dim)``.

    Args:
        num_classes (`int`, defaults to `1001`): rows of the table, the null class included (ImageNet's
            1000 classes and the null class 1000 in ``cin256-v2``).
        embedding_dim (`int`, defaults to `512`): the token's width, the U-Net's ``cross_attention_dim``.
        null_class (`int`, *optional*, defaults to `1000`): the label guidance uses as unconditional
            input; ``None`` for a model trained without one (guidance is then unavailable).
    """

    @register_to_config
    def __init__(self, num_classes: int = 1001, embedding_dim: int = 512, null_class: int | None = 1000):
        super().__init__()
        if null_class is not None and not 0 <= null_class < num_classes:
            raise ValueError(
                f"`null_class` must be a row of the table, in [0, {num_classes}), or None, but got {null_class}."
            )
        self.embedding = torch.nn.Embedding(num_classes, embedding_dim)

    def forward(self, class_labels: torch.Tensor) -> torch.Tensor:
        return self.embedding(class_labels)[:, None, :]
