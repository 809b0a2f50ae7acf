"""Text2Video-Zero: three denoising loops per call (the first frame to t1, on to t0, every frame from t1), each cached
on its own."""

import inspect

import numpy as np
import pytest
import torch
from diffusers import TextToVideoZeroPipeline, TextToVideoZeroSDXLPipeline

from deepcache import (
    DeepCacheSDHelper,
    DeepCacheTextToVideoZeroPipeline,
    DeepCacheTextToVideoZeroSDXLPipeline,
    uniform_full_steps,
)
from deepcache.testing.tiny import tiny_stable_diffusion_components, tiny_stable_diffusion_xl_components

STEPS, T0, T1, FRAMES = 10, 4, 6, 3
LOOPS = (STEPS - T1 - 1, T1 - T0, T1 + 1)  # iterations of each loop: 3, 2, 7
KINDS = {
    "sd": (TextToVideoZeroPipeline, DeepCacheTextToVideoZeroPipeline, tiny_stable_diffusion_components),
    "sdxl": (TextToVideoZeroSDXLPipeline, DeepCacheTextToVideoZeroSDXLPipeline, tiny_stable_diffusion_xl_components),
}


def _pipe(kind, deepcache=True):
    parent, ours, components = KINDS[kind]
    parameters = inspect.signature(parent.__init__).parameters
    pipe = (ours if deepcache else parent)(**{k: v for k, v in components().items() if k in parameters})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _video(pipe, **kwargs):
    generator = torch.Generator().manual_seed(0)
    size = {"height": 32, "width": 32}
    images = pipe(
        "a red cube",
        video_length=FRAMES,
        num_inference_steps=STEPS,
        t0=T0,
        t1=T1,
        generator=generator,
        **size,
        **kwargs,
    ).images
    return np.asarray(images)


def _expected_full_steps(interval):
    starts = np.cumsum((0, *LOOPS[:-1]))
    return [int(start) + step for start, length in zip(starts, LOOPS) for step in uniform_full_steps(length, interval)]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_caching_off_equals_diffusers_and_the_signature_is_the_parents(kind):
    ours, plain = _pipe(kind), _pipe(kind, deepcache=False)
    np.testing.assert_array_equal(_video(ours), _video(plain))
    parameters = list(inspect.signature(ours.__call__).parameters)
    assert parameters[: len(inspect.signature(plain.__call__).parameters)] == list(
        inspect.signature(plain.__call__).parameters
    )
    assert "cache_interval" in parameters


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_loop_has_its_own_schedule_and_its_first_step_full(kind):
    pipe = _pipe(kind)
    mid_block_ran, calls = [], []
    pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    pipe.unet.mid_block.register_forward_pre_hook(lambda module, args: mid_block_ran.append(len(calls) - 1))
    video = _video(pipe, cache_interval=3, cache_branch_id=0)
    assert calls == [2] * (LOOPS[0] + LOOPS[1]) + [2 * FRAMES] * LOOPS[2]  # guided: the first frame, then every frame
    assert mid_block_ran == _expected_full_steps(3) == [0, 3, 5, 8, 11]
    record = pipe.deepcache_record
    assert record.num_iterations == sum(LOOPS) and list(record.full_steps) == mid_block_ran
    assert np.isfinite(video).all() and not np.array_equal(video, _video(_pipe(kind)))


def test_every_loop_restarts_even_when_interval_spans_them():
    """An interval longer than every loop: each loop still runs its first step in full, so the
    all-frames loop never replays the first frame's (smaller-batch) features."""
    pipe = _pipe("sd")
    _video(pipe, cache_interval=50)
    assert list(pipe.deepcache_record.full_steps) == [0, LOOPS[0], LOOPS[0] + LOOPS[1]]


def test_each_loop_forecasts_from_its_own_full_steps():
    """The all-frames loop has a larger batch than the first frame's loops: a forecast across loops would fail."""
    pipe = _pipe("sd")
    linear = _video(pipe, cache_interval=2, cache_branch_id=0, cache_forecast="linear")
    assert np.isfinite(linear).all() and not np.array_equal(linear, _video(pipe, cache_interval=2, cache_branch_id=0))


def test_the_helper_on_the_plain_pipeline_equals_ours():
    ours = _video(_pipe("sd"), cache_interval=3, cache_branch_id=1)
    plain = _pipe("sd", deepcache=False)
    helper = DeepCacheSDHelper(plain)
    helper.set_params(cache_interval=3, cache_branch_id=1)
    with helper:
        np.testing.assert_array_equal(_video(plain), ours)
        assert list(plain.deepcache_record.full_steps) == _expected_full_steps(3)
    assert type(plain) is TextToVideoZeroPipeline
