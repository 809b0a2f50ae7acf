import gc
import json
import re

import numpy as np
import pytest
import torch
from diffusers import HeunDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from helpers import compile_counting_graphs

import deepcache
from deepcache import (
    DeepCacheStableDiffusionPipeline,
    nonuniform_full_steps,
)
from deepcache.runtime import DeepCacheRun
from deepcache.testing import tiny_stable_diffusion_components

STEPS = 10


def pipelines():
    """A plain diffusers pipeline and a DeepCache one with identical random weights."""
    plain = StableDiffusionPipeline(**tiny_stable_diffusion_components())
    ours = DeepCacheStableDiffusionPipeline(**tiny_stable_diffusion_components())
    for pipe in (plain, ours):
        pipe.set_progress_bar_config(disable=True)
    return plain, ours


def generate(pipe, prompt="a red cube", seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).images


def full_step_iterations(pipe, **kwargs):
    """The loop iterations at which the mid block (so the whole U-Net) ran."""
    iterations, state = [], {"step": 0}
    pipe.unet.mid_block.register_forward_hook(lambda *_: iterations.append(state["step"]))

    def count(pipeline, step, timestep, callback_kwargs):
        state["step"] = step + 1
        return {}

    images = generate(pipe, callback_on_step_end=count, **kwargs)
    return iterations, images


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"guidance_scale": 1.0}, {"num_images_per_prompt": 2}, {"negative_prompt": "blurry", "eta": 0.5}],
)
def test_caching_off_equals_diffusers_exactly(kwargs):
    plain, ours = pipelines()
    assert type(ours.unet) is UNet2DConditionModel  # cache-aware only during a call
    assert np.array_equal(generate(ours, **kwargs), generate(plain, **kwargs))
    assert np.array_equal(generate(ours, cache_interval=1, cache_branch_id=3, **kwargs), generate(plain, **kwargs))


def test_uniform_caching_runs_the_full_network_only_on_full_steps():
    plain, ours = pipelines()
    iterations, images = full_step_iterations(ours, cache_interval=3)
    assert iterations == [0, 3, 6, 9]
    baseline = generate(plain)
    assert images.shape == baseline.shape and np.isfinite(images).all()
    assert 0 < np.abs(images - baseline).max() < 0.5  # cached steps approximate, they do not equal


def test_nonuniform_caching_follows_the_reference_schedule():
    _, ours = pipelines()
    iterations, _ = full_step_iterations(
        ours, num_inference_steps=20, cache_interval=4, uniform=False, center=6, pow=1.4
    )
    assert iterations == list(nonuniform_full_steps(20, 4, 6, 1.4))


def test_second_order_scheduler_counts_loop_iterations_not_timesteps():
    _, ours = pipelines()
    ours.scheduler = HeunDiscreteScheduler.from_config(ours.scheduler.config)
    iterations, images = full_step_iterations(ours, num_inference_steps=4, cache_interval=3)
    assert len(ours.scheduler.timesteps) == 7  # Heun: 2 * 4 - 1 U-Net calls, timestep values repeat
    assert iterations == [0, 3, 6] and np.isfinite(images).all()


def test_user_callbacks_still_run_every_step():
    _, ours = pipelines()
    seen = []

    def callback(pipeline, step, timestep, callback_kwargs):
        seen.append((step, callback_kwargs["latents"].shape))
        return {"latents": callback_kwargs["latents"]}

    generate(ours, cache_interval=3, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
    assert [step for step, _ in seen] == list(range(STEPS)) and seen[0][1] == (1, 4, 16, 16)


def test_matches_the_original_deepcache_helper(original_helper):
    for branch in (0, 1, 5, 11):
        plain, ours = pipelines()
        helper = original_helper.DeepCacheSDHelper(pipe=plain)
        helper.set_params(cache_interval=3, cache_branch_id=branch)
        helper.enable()
        original = generate(plain)
        helper.disable()
        assert np.array_equal(generate(ours, cache_interval=3, cache_branch_id=branch), original), branch
        reuse = generate(ours, cache_interval=3, cache_branch_id=branch, cache_forecast="reuse")
        assert np.array_equal(reuse, original), branch
    # The forked pipelines' (cache_layer_id, cache_block_id) name the same branches.
    assert np.array_equal(
        generate(ours, cache_interval=3, cache_layer_id=1, cache_block_id=1),
        generate(ours, cache_interval=3, cache_branch_id=5),
    )


def test_no_state_survives_a_call_even_one_that_raises():
    _, ours = pipelines()
    _, fresh = pipelines()
    generate(ours, prompt=["a", "b"], cache_interval=3)

    def explode(pipeline, step, timestep, callback_kwargs):
        if step == 4:
            raise RuntimeError("stop")
        return {}

    with pytest.raises(RuntimeError, match="stop"):
        generate(ours, cache_interval=3, callback_on_step_end=explode)
    assert not ours.unet._forward_hooks and not ours.unet._forward_pre_hooks
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, DeepCacheRun)]
    # A different batch size after both calls computes what a fresh pipeline computes.
    kwargs = dict(prompt="c", num_images_per_prompt=3, cache_interval=2, cache_branch_id=4)
    assert np.array_equal(generate(ours, **kwargs), generate(fresh, **kwargs))


def test_save_and_load_round_trip(tmp_path):
    plain, ours = pipelines()
    ours.save_pretrained(tmp_path / "deepcache")
    index = json.loads((tmp_path / "deepcache" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]

    loaded = DeepCacheStableDiffusionPipeline.from_pretrained(tmp_path / "deepcache")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.unet) is UNet2DConditionModel
    assert np.array_equal(generate(loaded, cache_interval=3), generate(ours, cache_interval=3))
    reloaded_plain = StableDiffusionPipeline.from_pretrained(tmp_path / "deepcache")
    reloaded_plain.set_progress_bar_config(disable=True)
    assert np.array_equal(generate(reloaded_plain), generate(plain))

    plain.save_pretrained(tmp_path / "plain")
    from_plain = DeepCacheStableDiffusionPipeline.from_pretrained(tmp_path / "plain")
    from_plain.set_progress_bar_config(disable=True)
    assert np.array_equal(generate(from_plain, cache_interval=3), generate(ours, cache_interval=3))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"cache_interval": 0}, ValueError, "`cache_interval` must be a positive integer, but got 0."),
        (
            {"cache_interval": 3, "cache_branch_id": 12},
            ValueError,
            "`cache_branch_id` must be in [0, 11] for this U-Net",
        ),
        ({"cache_interval": 3, "uniform": False, "center": 10}, ValueError, "`center` must be in [0, 9] for 10 steps"),
        ({"cache_interval": 3, "pow": 1}, ValueError, "`pow` must be greater than 1"),
    ],
)
def test_bad_caching_arguments_raise_clear_errors(kwargs, error, message):
    _, ours = pipelines()
    with pytest.raises(error, match=re.escape(message)):
        generate(ours, **kwargs)
    assert not ours.unet._forward_hooks and not ours.unet._forward_pre_hooks


def test_compiled_unet_keeps_one_graph_per_step_kind_across_calls():
    _, ours = pipelines()
    expected = generate(ours, cache_interval=3)
    ours.unet, graphs = compile_counting_graphs(ours.unet)
    for _ in range(2):
        np.testing.assert_allclose(generate(ours, cache_interval=3), expected, atol=1e-5)
    assert len(graphs) == 2


@pytest.mark.parametrize(("dynamic", "expected"), [(False, [2, 4, 4, 4, 6]), (None, [2, 4, 4, 4, 4])])
def test_a_compiled_unet_serves_calls_and_batch_sizes_without_compiling_per_step(dynamic, expected):
    """``dynamic=False``: a full and a cached graph per batch size; the default turns dynamic at the second size and
    serves the rest."""
    _, ours = pipelines()
    ours.unet, graphs = compile_counting_graphs(ours.unet, dynamic=dynamic)
    counts = []
    for images in (1, 2, 1, 2, 3):
        generate(ours, cache_interval=3, num_images_per_prompt=images)
        counts.append(len(graphs))
    assert counts == expected


def test_caching_arguments_come_from_the_technique_configs_and_unknown_ones_are_refused():
    from deepcache.runtime import caching_configs, caching_kwargs

    configs = caching_configs({"cache_interval": 3, "gate_step": 2})
    assert configs["deepcache"] == deepcache.DeepCacheConfig(3) and configs["gating"] == deepcache.GatingConfig(2)
    assert configs["block_caching"] == deepcache.BlockCacheConfig()
    assert caching_kwargs(configs) == {"cache_interval": 3, "gate_step": 2}
    with pytest.raises(TypeError, match=r"Unknown caching arguments \['cache_intervals'\]; the caching arguments are"):
        caching_configs({"cache_intervals": 3})
    with pytest.raises(TypeError, match="`block_cache` must be a BlockCacheSchedule"):
        pipelines()[1]("a cube", num_inference_steps=2, block_cache="all")
