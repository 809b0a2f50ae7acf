"""Few-step models and samplers (LCM, Turbo, Lightning): a fixed schedule over so few iterations warns, and still
computes what it says."""

import warnings

import numpy as np
import pytest
import torch
from diffusers import (
    LatentConsistencyModelPipeline,
    LCMScheduler,
    StableDiffusionPipeline,
)

from deepcache import (
    DeepCacheSDHelper,
    DeepCacheStableDiffusionPipeline,
    FewStepsWarning,
)
from deepcache.testing import tiny_pipeline
from deepcache.testing.tiny import tiny_stable_diffusion_components
from deepcache.testing.tiny_unets import tiny_unet


def _lcm(pipe):
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    return pipe


def _images(pipe, steps=4, **kwargs):
    generator = torch.Generator().manual_seed(0)
    return pipe(
        "a red cube", num_inference_steps=steps, guidance_scale=1.0, generator=generator, output_type="np", **kwargs
    ).images


def _lcm_images(pipe):
    """LCM's pipeline takes guidance as a timestep condition; its default scale is kept."""
    return pipe(
        "a red cube", num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images


def test_caching_off_equals_diffusers_with_lcm_and_does_not_warn():
    ours, plain = (
        _lcm(tiny_pipeline("sd", DeepCacheStableDiffusionPipeline)),
        _lcm(tiny_pipeline("sd", StableDiffusionPipeline)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewStepsWarning)
        np.testing.assert_array_equal(_images(ours), _images(plain))
        _images(ours, steps=8, cache_interval=2)  # eight iterations: no warning
        _images(ours, cache_interval=2, cache_threshold=0.1)  # adaptive caching decides per step: no warning


def test_a_fixed_schedule_over_few_iterations_warns_naming_them_and_runs_as_scheduled():
    pipe = _lcm(tiny_pipeline("sd", DeepCacheStableDiffusionPipeline))
    mid_block_ran, calls = [], []
    pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    pipe.unet.mid_block.register_forward_pre_hook(lambda module, args: mid_block_ran.append(len(calls) - 1))
    with pytest.warns(
        FewStepsWarning, match=r"only 4 denoising iterations.*runs 2 of them in full \(0, 2\) and caches 2 \(1, 3\)"
    ) as caught:
        images = _images(pipe, cache_interval=2, cache_branch_id=0)
    assert len([w for w in caught if w.category is FewStepsWarning]) == 1
    assert mid_block_ran == [0, 2] and list(pipe.deepcache_record.full_steps) == [0, 2]
    assert np.isfinite(images).all()


def test_the_latent_consistency_pipeline_through_the_helper():
    """LCM's own pipeline with the helper: unchanged before and after, cached as scheduled while enabled."""
    components = tiny_stable_diffusion_components()
    components["unet"] = tiny_unet("sd1.5", time_cond_proj_dim=32)
    components["scheduler"] = LCMScheduler.from_config(components["scheduler"].config)
    pipe = LatentConsistencyModelPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    before = _lcm_images(pipe)
    helper = DeepCacheSDHelper(pipe)
    helper.set_params(cache_interval=2, cache_branch_id=0)
    with helper, pytest.warns(FewStepsWarning, match="only 4 denoising iterations"):
        cached = _lcm_images(pipe)
        assert list(pipe.deepcache_record.full_steps) == [0, 2]
    after = _lcm_images(pipe)
    np.testing.assert_array_equal(before, after)
    assert not np.array_equal(before, cached) and np.isfinite(cached).all()
