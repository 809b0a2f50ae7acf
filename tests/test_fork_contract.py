"""The DeepCache fork's U-Net contract: ``sample, features = unet(..., return_dict=False)``, then
``replicate_prev_features=features`` on the next cached step, in a hand loop over a scheduler."""

import re

import pytest
import torch
from diffusers import DDIMScheduler

import deepcache
from deepcache.testing import tiny_pipeline, tiny_unet, tiny_unet_inputs


def _step(scheduler, noise, t, sample):
    """The scheduler's step on the channels the U-Net predicts (SVD's input also carries the image's)."""
    if noise.shape == sample.shape:
        return scheduler.step(noise, t, sample).prev_sample
    dim = next(d for d, (a, b) in enumerate(zip(noise.shape, sample.shape)) if a != b)
    state, condition = sample.split([noise.shape[dim], sample.shape[dim] - noise.shape[dim]], dim)
    return torch.cat([scheduler.step(noise, t, state).prev_sample, condition], dim)


def _fork_loop(unet, args, kwargs, ids, interval=3, steps=6, as_dict=False):
    """The fork's denoising loop: a full step every ``interval`` iterations, the features fed back in between."""
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(steps)
    sample, features = args[0], None
    for i, t in enumerate(scheduler.timesteps):
        if not ids:  # no caching: the plain U-Net's loop
            sample = _step(scheduler, unet(sample, t, *args[2:], **kwargs).sample, t, sample)
            continue
        given = None if i % interval == 0 else features
        call = dict(**kwargs, **ids, replicate_prev_features=given)
        if as_dict:
            output = unet(sample, t, *args[2:], **call)
            noise, features = output.sample, output.features
        else:
            noise, features = unet(sample, t, *args[2:], **call, return_dict=False)
        if given is not None:
            assert features is given  # a cached step hands back what it was given, as the fork's does
        sample = _step(scheduler, noise, t, sample)
    return sample


def test_fork_loop_round_trips_with_both_numberings_on_every_unet_class(models):
    plain, cached, args, kwargs = models
    layout = cached.deepcache_layout
    uncached = _fork_loop(plain, args, kwargs, {})
    for branch in (1, layout.num_branches - 1):
        block, layer = layout.fork_ids(branch)
        by_branch = _fork_loop(cached, args, kwargs, {"cache_branch_id": branch})
        by_fork_ids = _fork_loop(cached, args, kwargs, {"cache_layer_id": block, "cache_block_id": layer})
        named = _fork_loop(cached, args, kwargs, {"cache_branch_id": branch}, as_dict=True)
        assert torch.equal(by_branch, by_fork_ids) and torch.equal(by_branch, named), branch
        assert not torch.equal(by_branch, uncached), branch  # the cached steps did reuse the features


def test_fork_loop_gives_the_pipeline_images_for_the_same_schedule():
    """A hand loop over the scheduler (no guidance, DDIM) equals the pipeline at interval 3, branch 1, uniform."""
    pipe = tiny_pipeline("sd", cls=deepcache.DeepCacheStableDiffusionPipeline)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 32, 32, generator=generator)
    text = torch.randn(1, 77, pipe.text_encoder.config.hidden_size, generator=generator)
    images = pipe(
        prompt_embeds=text,
        latents=latents,
        num_inference_steps=9,
        guidance_scale=1.0,
        output_type="latent",
        cache_interval=3,
        cache_layer_id=0,
        cache_block_id=0,
    ).images
    assert pipe.deepcache_record.full_steps == (0, 3, 6)

    unet = deepcache.DeepCacheUNet2DConditionModel.from_unet(pipe.unet)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(9)
    sample, features = latents * scheduler.init_noise_sigma, None
    for i, t in enumerate(scheduler.timesteps):
        given = None if i % 3 == 0 else features
        noise, features = unet(
            scheduler.scale_model_input(sample, t),
            t,
            encoder_hidden_states=text,
            cache_layer_id=0,
            cache_block_id=0,
            replicate_prev_features=given,
            return_dict=False,
        )
        sample = scheduler.step(noise, t, sample).prev_sample
    assert torch.equal(sample, images)


def test_extras_dict_round_trips_like_the_features():
    """With Block Caching's outputs too, the tuple carries a dict by name; fed back whole, it works as its features."""
    unet = tiny_unet("sd1.5", cls=deepcache.DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    units = deepcache.block_units(unet, "all")
    _, extras = unet(*args, cache_branch_id=2, block_cache_units=units, return_dict=False)
    assert set(extras) == {"features", "block_residuals"}
    other = (args[0] + 0.1, *args[1:])
    from_dict, features = unet(*other, cache_branch_id=2, replicate_prev_features=extras, return_dict=False)
    from_tensor, _ = unet(*other, cache_branch_id=2, replicate_prev_features=extras["features"], return_dict=False)
    assert torch.equal(from_dict, from_tensor) and features is extras["features"]


def _expected(shape) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ")"


def test_wrong_features_are_refused_naming_the_expected_and_given_shapes(models):
    _, cached, args, kwargs = models
    deep = cached.deepcache_layout.num_branches - 1
    _, features = cached(*args, **kwargs, cache_branch_id=1, return_dict=False)
    _, deep_features = cached(*args, **kwargs, cache_branch_id=deep, return_dict=False)
    wrong_batch, wrong_branch, wrong_size = (1, features[:1]), (deep, features), (1, features[..., :-1, :-1])
    for branch, given in (wrong_batch, wrong_branch, wrong_size):
        expected = _expected((deep_features if branch == deep else features).shape)
        message = rf"`replicate_prev_features` must have shape {re.escape(expected)} for a cached step at branch "
        message += rf"{branch} with this input, but got {re.escape(str(tuple(given.shape)))}"
        with pytest.raises(ValueError, match=message):
            cached(*args, **kwargs, cache_branch_id=branch, replicate_prev_features=given)


def test_features_of_the_wrong_type_are_refused():
    unet = tiny_unet("sd1.5", cls=deepcache.DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    _, features = unet(*args, cache_branch_id=1, return_dict=False)
    for given, kind in (([features], "a list"), ({"block_residuals": {}}, r"a dict with keys \['block_residuals'\]")):
        with pytest.raises(TypeError, match=rf"`replicate_prev_features` must be the `features` tensor .* got {kind}"):
            unet(*args, cache_branch_id=1, replicate_prev_features=given)
    with pytest.raises(TypeError, match="got a str"):
        unet(*args, cache_branch_id=1, replicate_prev_features={"features": "x"})
