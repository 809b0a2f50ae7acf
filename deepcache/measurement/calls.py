"""The inputs of measuring runs (prompts times seeds, or explicit call arguments, each a dict for one pipeline call),
and their outputs as image tensors."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


def input_calls(prompts, seeds, calls, call_kwargs) -> list[dict]:
    """One dict of call arguments per run: each of ``calls`` (with ``call_kwargs``), or every prompt with every
    seed (a fresh CPU ``torch.Generator`` each); a clear error for inputs given both ways or of the wrong type."""
    if calls is not None:
        if prompts is not None:
            raise ValueError("Pass either `prompts` (with `seeds`) or `calls`, not both.")
        if not calls or not all(isinstance(call, Mapping) for call in calls):
            raise TypeError(f"`calls` must be a non-empty sequence of dicts of call arguments, but got {calls!r}.")
        return [{**call_kwargs, **call} for call in calls]
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise TypeError(f"`seeds` must be a non-empty sequence of integers, but got {seeds!r}.")
    prompts = [prompts] if isinstance(prompts, str) or prompts is None else list(prompts)
    return [
        {
            **call_kwargs,
            **({} if prompt is None else {"prompt": prompt}),
            "generator": torch.Generator().manual_seed(seed),
        }
        for prompt in prompts
        for seed in seeds
    ]


def output_images(output) -> torch.Tensor:
    """A pipeline output's images or frames as (N, C, H, W) floats in [0, 1]."""
    images = output[0]
    array = np.stack([np.asarray(i) for i in images]) if isinstance(images, list) else np.asarray(images)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255
    array = array.reshape(-1, *array.shape[-3:])  # video frames: one image each
    return torch.from_numpy(np.ascontiguousarray(array)).float().permute(0, 3, 1, 2)


def call_generators(call: Mapping) -> list[torch.Generator]:
    """The ``torch.Generator`` objects among a call's arguments (alone or in lists), in order."""
    found = []
    for value in call.values():
        if isinstance(value, torch.Generator):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [v for v in value if isinstance(v, torch.Generator)]
    return found
