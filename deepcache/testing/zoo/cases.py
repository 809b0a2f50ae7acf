"""The battery's case type and registry, and the small builders and calls the families share."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import diffusers
import numpy as np
import torch
from diffusers import (
    ControlNetModel,
)
from PIL import Image
from transformers import (
    CLIPImageProcessor,
    CLIPVisionModelWithProjection,
)

from ..tiny import tiny_animatediff_components, tiny_clip_vision_config, tiny_stable_diffusion_components
from ..tiny_unets import SD15_UNET, tiny_unet


@dataclasses.dataclass(frozen=True)
class PipelineCase:
    """One diffusers pipeline in the battery.

    Args:
        name (`str`): the diffusers class name.
        build (`Callable`): returns the plain pipeline, with random weights (seed 0).
        call (`Callable`, *optional*): returns the keyword arguments of one call (a fresh generator each time);
            ``None`` for a pipeline refused at enable whose tiny build cannot run.
        dedicated (`str`, *optional*): the ``deepcache`` pipeline class that extends it, if any.
        loops (`int`, defaults to `1`): denoising loops one call runs.
    """

    name: str
    build: Callable
    call: Callable | None
    dedicated: str | None = None
    loops: int = 1


STEPS = 6
PROMPT = "a red cube"


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _image(size: int = 32, seed: int = 0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size, size, 3) * 255).astype(np.uint8))


def _mask(size: int = 32) -> Image.Image:
    return Image.fromarray(np.pad(np.full((size // 2, size // 2), 255, np.uint8), size // 4))


def _text_call(**extra) -> dict:
    return {"prompt": PROMPT, "num_inference_steps": STEPS, "generator": _generator(), "output_type": "np", **extra}


def _sd(in_channels: int = 4, **unet) -> dict:
    components = tiny_stable_diffusion_components()
    if in_channels != 4 or unet:
        components["unet"] = tiny_unet("sd1.5", in_channels=in_channels, **unet)
    return components


def _clean(components: dict, pipeline_class: type) -> dict:
    """The components ``pipeline_class`` takes (the SD builders give a superset)."""
    names = inspect.signature(pipeline_class.__init__).parameters
    return {k: v for k, v in components.items() if k in names}


def _build(name: str, components: Callable) -> Callable:
    def build():
        cls = getattr(diffusers, name)
        return cls(**_clean(components(), cls))

    return build


def _image_encoder() -> CLIPVisionModelWithProjection:
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(tiny_clip_vision_config(image_size=32, patch_size=8)).eval()


def _feature_extractor() -> CLIPImageProcessor:
    return CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})


def _animatediff(**extra) -> dict:
    return {**tiny_animatediff_components(), **extra}


# A ControlNet (or AnimateDiff's SparseCtrl) with the tiny SD 1.5 layout's down path.
CONTROLNET = dict(
    block_out_channels=SD15_UNET["block_out_channels"],
    layers_per_block=2,
    cross_attention_dim=16,
    attention_head_dim=4,
    norm_num_groups=4,
    conditioning_embedding_out_channels=(4, 8),
)


def _controlnet() -> ControlNetModel:
    torch.manual_seed(0)
    return ControlNetModel(**CONTROLNET, down_block_types=SD15_UNET["down_block_types"]).eval()


def _video(frames: int = 2, size: int = 32) -> list[Image.Image]:
    return [_image(size, seed) for seed in range(frames)]


CASES: list[PipelineCase] = []


def case(name: str, components, call, **options) -> None:
    CASES.append(PipelineCase(name, _build(name, components), call, **options))


def _marigold_call() -> dict:
    """Two ensemble members at batch size 1: two denoising loops in one call."""
    return {
        "image": _image(),
        "num_inference_steps": STEPS,
        "ensemble_size": 2,
        "processing_resolution": 32,
        "generator": _generator(),
        "output_type": "np",
    }


def _marigold() -> dict:
    components = tiny_stable_diffusion_components()
    return {**components, "unet": tiny_unet("sd1.5", in_channels=8), "prediction_type": "depth"}
