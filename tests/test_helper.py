"""The plug-and-play helper: the original's API and results, without the original's bugs."""

import dataclasses
import inspect
import json
import re

import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    DDPMScheduler,
    DiffusionPipeline,
    HeunDiscreteScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from helpers import TwoPassPipeline

import deepcache
from deepcache import DeepCacheSDHelper, DeepCacheUNet2DModel, nonuniform_full_steps
from deepcache.runtime import enabled_helper
from deepcache.testing import tiny_pipeline, tiny_stable_diffusion_components, tiny_unet

STEPS = 10


def sd_pipeline():
    return tiny_pipeline("sd")


def generate(pipe, prompt="a red cube", **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    return pipe(prompt, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs).images


def full_step_iterations(pipe, **kwargs):
    """Loop iterations at which the mid block (so the whole U-Net) ran."""
    iterations, state = [], {"step": 0}
    handle = pipe.unet.mid_block.register_forward_hook(lambda *_: iterations.append(state["step"]))

    def count(pipeline, step, timestep, callback_kwargs):
        state["step"] = step + 1
        return {}

    generate(pipe, callback_on_step_end=count, **kwargs)
    handle.remove()
    return iterations


@pytest.mark.parametrize("branch", [0, 3, 7])
def test_same_images_as_the_original_helper(original_helper, branch):
    pipe = sd_pipeline()
    original = original_helper.DeepCacheSDHelper(pipe=pipe)
    original.set_params(cache_interval=3, cache_branch_id=branch)
    original.enable()
    expected = generate(pipe)
    original.disable()

    fresh = sd_pipeline()
    helper = DeepCacheSDHelper(pipe=fresh)
    helper.set_params(cache_interval=3, cache_branch_id=branch)
    helper.enable()
    assert np.array_equal(generate(fresh), expected)


def test_no_state_leaks_between_calls_and_batch_size_may_change():
    """The original reuses the last call's features at the next call's first step, and crashes on a new batch size."""
    pipe, fresh = sd_pipeline(), sd_pipeline()
    helper = DeepCacheSDHelper(pipe)
    helper.set_params(cache_interval=3, cache_branch_id=1)
    helper.enable()
    generate(pipe, prompt=["x", "y"])
    second = generate(pipe, prompt="a blue ball", num_images_per_prompt=3)
    with DeepCacheSDHelper(fresh) as fresh_helper:
        fresh_helper.set_params(cache_interval=3, cache_branch_id=1)
        assert np.array_equal(second, generate(fresh, prompt="a blue ball", num_images_per_prompt=3))


def test_repeated_timesteps_count_loop_iterations():
    """Heun calls the U-Net 2n - 1 times with repeated timesteps; the original counts by timestep value."""
    pipe = sd_pipeline()
    pipe.scheduler = HeunDiscreteScheduler.from_config(pipe.scheduler.config)
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=0)
        assert full_step_iterations(pipe, num_inference_steps=4) == [0, 3, 6]


def test_non_uniform_skip_mode():
    pipe = sd_pipeline()
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=4, cache_branch_id=0, skip_mode="non-uniform", center=6, pow=1.4)
        assert full_step_iterations(pipe, num_inference_steps=20) == list(nonuniform_full_steps(20, 4, 6, 1.4))
        helper.set_params(cache_interval=4, cache_branch_id=0, skip_mode="non-uniform")  # centre round(0.3 T), pow 1.4
        assert full_step_iterations(pipe, num_inference_steps=20) == list(nonuniform_full_steps(20, 4))


def test_custom_pipeline_with_two_unet_calls_per_step_keeps_one_feature_per_call():
    """The original shares one cache entry between the calls of a step and crashes on a keyword timestep."""
    pipe = TwoPassPipeline(tiny_unet("ddpm"), DDPMScheduler())
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=2)
        result = pipe()

    unet, scheduler = tiny_unet("ddpm", cls=DeepCacheUNet2DModel), DDPMScheduler()
    sample = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    scheduler.set_timesteps(7)
    features = {}
    for i, t in enumerate(scheduler.timesteps):
        outputs = []
        for call, flip in enumerate((False, True)):
            x = sample.flip(-1) if flip else sample
            cached = features[call] if i % 3 else None
            out, features[call] = unet(x, t, cache_branch_id=2, replicate_prev_features=cached, return_dict=False)
            outputs.append(out.flip(-1) if flip else out)
        sample = scheduler.step((outputs[0] + outputs[1]) / 2, t, sample).prev_sample
    assert torch.equal(result, sample)


def test_controlnet_pipeline():
    components = tiny_stable_diffusion_components()
    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(components["unet"], conditioning_embedding_out_channels=(8, 16)).eval()
    pipe = StableDiffusionControlNetPipeline(**components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    control = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    baseline = generate(pipe, image=control)
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=1)
        iterations = full_step_iterations(pipe, image=control)
        cached = generate(pipe, image=control)
    assert iterations == [0, 3, 6, 9]
    assert cached.shape == baseline.shape and np.isfinite(cached).all() and 0 < np.abs(cached - baseline).max() < 0.5
    assert np.array_equal(generate(pipe, image=control), baseline)


def test_enable_twice_disable_twice_and_context_manager_restore_exactly():
    pipe = sd_pipeline()
    pipe.unet._old_forward = pipe.unet.forward  # as accelerate's offloading hooks keep it
    before, pipe_class = generate(pipe), type(pipe)
    signature = inspect.signature(pipe.__call__)
    helper = DeepCacheSDHelper(pipe)
    helper.set_params(cache_interval=3, cache_branch_id=0)
    helper.enable()
    helper.enable()
    assert helper.enabled and inspect.signature(pipe.__call__) == signature
    assert pipe.unet._old_forward.__func__ is type(pipe.unet).forward
    cached = generate(pipe)
    helper.disable()
    helper.disable()
    assert not helper.enabled and type(pipe) is pipe_class and type(pipe.unet) is UNet2DConditionModel
    assert pipe.unet._old_forward.__func__ is UNet2DConditionModel.forward
    assert np.array_equal(generate(pipe), before)

    with pytest.raises(RuntimeError, match="inside"):
        with helper:
            assert np.array_equal(generate(pipe), cached)
            raise RuntimeError("inside")
    assert type(pipe) is pipe_class and type(pipe.unet) is UNet2DConditionModel and enabled_helper(pipe) is None
    assert np.array_equal(generate(pipe), before)


def test_a_second_helper_on_the_same_pipeline_is_refused():
    pipe = sd_pipeline()
    with DeepCacheSDHelper(pipe):
        with pytest.raises(ValueError, match=re.escape("already has another enabled DeepCacheSDHelper")):
            DeepCacheSDHelper(pipe).enable()
    assert type(pipe) is StableDiffusionPipeline


def test_enable_on_another_pipeline_releases_the_first():
    first, second = sd_pipeline(), sd_pipeline()
    helper = DeepCacheSDHelper(first)
    helper.set_params(cache_interval=3, cache_branch_id=0)
    helper.enable()
    helper.enable(second)
    assert type(first) is StableDiffusionPipeline and type(first.unet) is UNet2DConditionModel
    assert helper.pipe is second and type(second) is not StableDiffusionPipeline
    helper.disable()
    assert type(second) is StableDiffusionPipeline


def test_saving_while_enabled_writes_a_plain_diffusers_checkpoint(tmp_path):
    pipe = sd_pipeline()
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3)
        pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert json.loads((tmp_path / "unet" / "config.json").read_text())["_class_name"] == "UNet2DConditionModel"


def test_failed_call_leaves_no_hooks():
    pipe = sd_pipeline()

    def explode(pipeline, step, timestep, callback_kwargs):
        raise RuntimeError("stop")

    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=0)
        with pytest.raises(RuntimeError, match="stop"):
            generate(pipe, callback_on_step_end=explode)
        assert not pipe.unet._forward_hooks and not pipe.unet._forward_pre_hooks
        assert full_step_iterations(pipe) == [0, 3, 6, 9]


@pytest.mark.parametrize(
    "params, error, message",
    [
        (
            {"skip_mode": "quadratic"},
            ValueError,
            "`skip_mode` must be one of ('uniform', 'non-uniform'), but got 'quadratic'.",
        ),
        ({"cache_branch_id": 12}, ValueError, "`cache_branch_id` must be in [0, 11] for this U-Net, but got 12."),
        ({"cache_branch_id": None}, TypeError, "`cache_branch_id` must be an integer, but got None."),
        ({"cache_interval": 2.5}, TypeError, "`cache_interval` must be a positive integer"),
        ({"skip_mode": "non-uniform", "pow": 0.5}, ValueError, "`pow` must be greater than 1"),
    ],
)
def test_bad_parameters_raise_clear_errors(params, error, message):
    helper = DeepCacheSDHelper(sd_pipeline())
    with pytest.raises(error, match=re.escape(message)):
        helper.set_params(**params)


def test_missing_pipeline_and_unsupported_unet_raise_clear_errors():
    with pytest.raises(ValueError, match=re.escape("DeepCacheSDHelper has no pipeline")):
        DeepCacheSDHelper().enable()

    class VideoPipeline(DiffusionPipeline):
        def __init__(self, unet):
            super().__init__()
            self.register_modules(unet=unet)

    with pytest.raises(
        TypeError,
        match="DeepCache supports U-Nets of the classes UNet2DConditionModel, .* "
        "but this pipeline's `unet` is a Linear",
    ):
        DeepCacheSDHelper(VideoPipeline(torch.nn.Linear(1, 1))).enable()


def test_set_params_takes_every_technique_argument_from_the_configs():
    """One list of fields: the original helper's three, then every technique config's field (the helper names
    branches by ``cache_branch_id`` only and says ``skip_mode`` for ``uniform``), with their defaults."""
    parameters = inspect.signature(DeepCacheSDHelper.set_params).parameters
    fields = [f for t in deepcache.TECHNIQUES for f in dataclasses.fields(t.config)]
    renamed = {"cache_interval", "cache_branch_id", "uniform", "cache_layer_id", "cache_block_id"}
    assert list(parameters) == ["self", "cache_interval", "cache_branch_id", "skip_mode"] + [
        f.name for f in fields if f.name not in renamed
    ]
    assert all(parameters[f.name].default == f.default for f in fields if f.name not in renamed)
    assert all(f"{name} (`" in DeepCacheSDHelper.set_params.__doc__ for name in list(parameters)[1:])
    helper = DeepCacheSDHelper()
    helper.set_params(3, 1, "non-uniform", cut_controlnet=False, gate_step=4)
    assert helper.configs["deepcache"] == deepcache.DeepCacheConfig(3, 1, uniform=False, cut_controlnet=False)
    assert helper.configs["gating"] == deepcache.GatingConfig(4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'cache_layer_id'"):
        helper.set_params(cache_layer_id=0)
