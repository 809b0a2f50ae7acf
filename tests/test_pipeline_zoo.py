"""Every DeepCache pipeline against its diffusers parent, on tiny random-weight pipelines."""

import json

import numpy as np
import torch
from helpers import CASES, generate
from torch.utils.flop_counter import FlopCounterMode

import deepcache
from deepcache import DeepCacheSDHelper, nonuniform_full_steps, uniform_full_steps
from deepcache.testing import TINY_PIPELINES, tiny_pipeline


def test_every_tiny_pipeline_has_a_case():
    assert sorted(CASES) == sorted(TINY_PIPELINES)


def test_caching_off_equals_the_diffusers_parent_exactly(case):
    cls, _, _ = CASES[case]
    plain, ours = tiny_pipeline(case), tiny_pipeline(case, cls)
    assert isinstance(ours, type(plain)) and type(ours.unet) is type(plain.unet)  # cache-aware only during a call
    expected = generate(plain, case)
    assert np.array_equal(generate(ours, case), expected)
    assert np.array_equal(generate(ours, case, cache_interval=1, cache_branch_id=2), expected)


def _record_unet_calls(pipe):
    """Per U-Net call: (FLOPs, whether the mid block ran). One U-Net call per loop iteration here."""
    calls, counter = [], {}

    def start(module, args):
        counter["mode"] = FlopCounterMode(display=False)
        counter["mode"].__enter__()
        calls.append([0, False])

    def stop(module, args, output):
        counter["mode"].__exit__(None, None, None)
        calls[-1][0] = counter["mode"].get_total_flops()

    pipe.unet.register_forward_pre_hook(start)
    pipe.unet.register_forward_hook(stop)
    pipe.unet.mid_block.register_forward_hook(lambda *_: calls[-1].__setitem__(1, True))
    return calls


def test_caching_on_runs_the_whole_unet_only_on_scheduled_iterations_of_those_run(case):
    """With strength < 1, denoising_start or denoising_end, the schedule covers the iterations that run."""
    cls, _, iterations = CASES[case]
    plain, ours = tiny_pipeline(case), tiny_pipeline(case, cls)
    plain_calls, ours_calls = _record_unet_calls(plain), _record_unet_calls(ours)
    baseline = generate(plain, case)
    cached = generate(ours, case, cache_interval=3)  # the pipeline's default branch
    assert len(plain_calls) == len(ours_calls) == iterations
    full = [i for i, (_, mid_ran) in enumerate(ours_calls) if mid_ran]
    assert full == list(uniform_full_steps(iterations, 3)) and full[0] == 0
    full_flops = plain_calls[0][0]
    assert all(flops == full_flops for flops, _ in plain_calls)
    for i, (flops, _) in enumerate(ours_calls):
        assert flops == full_flops if i in full else 0 < flops < full_flops
    assert cached.shape == baseline.shape and cached.dtype == baseline.dtype
    assert np.isfinite(cached).all() and not np.array_equal(cached, baseline)


def test_nonuniform_schedule_over_the_iterations_run():
    cls, _, iterations = CASES["sd-img2img"]
    ours = tiny_pipeline("sd-img2img", cls)
    calls = _record_unet_calls(ours)
    generate(ours, "sd-img2img", num_inference_steps=20, strength=0.5, cache_interval=3, uniform=False, pow=1.2)
    assert len(calls) == 10
    assert [i for i, (_, mid_ran) in enumerate(calls) if mid_ran] == list(nonuniform_full_steps(10, 3, None, 1.2))


def test_sdxl_base_with_denoising_end_then_refiner():
    base = tiny_pipeline("sdxl", deepcache.DeepCacheStableDiffusionXLPipeline)
    refiner = tiny_pipeline("sdxl-refiner", deepcache.DeepCacheStableDiffusionXLImg2ImgPipeline)
    base_calls, refiner_calls = _record_unet_calls(base), _record_unet_calls(refiner)
    generator = torch.Generator().manual_seed(0)
    latents = base(
        "a red cube",
        height=32,
        width=32,
        num_inference_steps=10,
        denoising_end=0.7,
        output_type="latent",
        generator=generator,
        cache_interval=3,
    ).images
    image = refiner(
        "a red cube",
        image=latents,
        num_inference_steps=10,
        denoising_start=0.7,
        output_type="np",
        generator=generator,
        cache_interval=3,
    ).images
    assert [mid for _, mid in base_calls] == [i in (0, 3, 6) for i in range(7)]
    assert [mid for _, mid in refiner_calls] == [True, False, False]
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()


def test_save_and_load_round_trip(case, tmp_path):
    cls, _, _ = CASES[case]
    parent = type(tiny_pipeline(case))
    ours = tiny_pipeline(case, cls)
    ours.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == parent.__name__
    assert index["unet"] == ["diffusers", type(ours.unet).__name__]

    loaded = cls.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is cls and type(loaded.unet) is type(ours.unet)  # the plain class, cache-aware in calls
    plain = parent.from_pretrained(tmp_path)
    plain.set_progress_bar_config(disable=True)
    assert type(plain.unet) is type(ours.unet)
    assert np.array_equal(generate(loaded, case), generate(plain, case))
    # Same weights; transformers' reloaded text encoders may differ from the originals by float rounding.
    np.testing.assert_allclose(
        generate(loaded, case, cache_interval=3), generate(ours, case, cache_interval=3), atol=1e-5
    )


def test_helper_equals_the_pipeline_and_disable_restores_exactly(case):
    cls, _, _ = CASES[case]
    plain, ours = tiny_pipeline(case), tiny_pipeline(case, cls)
    pipe_class, unet_class, unet_dict = type(plain), type(plain.unet), dict(vars(plain.unet))
    before = generate(plain, case)

    helper = DeepCacheSDHelper(plain)
    helper.set_params(cache_interval=3, cache_branch_id=cls.deepcache_defaults.cache_branch_id)
    helper.enable()
    assert np.array_equal(generate(plain, case), generate(ours, case, cache_interval=3))
    helper.disable()

    assert type(plain) is pipe_class and type(plain.unet) is unet_class and vars(plain.unet) == unet_dict
    assert not plain.unet._forward_hooks and not plain.unet._forward_pre_hooks
    assert np.array_equal(generate(plain, case), before)


def test_from_pipe_shares_components_between_deepcache_pipelines():
    plain = tiny_pipeline("sd")
    text_to_image = deepcache.DeepCacheStableDiffusionPipeline.from_pipe(plain)
    image_to_image = deepcache.DeepCacheStableDiffusionImg2ImgPipeline.from_pipe(text_to_image)
    assert image_to_image.unet is text_to_image.unet is plain.unet
    for pipe in (text_to_image, image_to_image):
        pipe.set_progress_bar_config(disable=True)
    assert np.array_equal(generate(text_to_image, "sd"), generate(tiny_pipeline("sd"), "sd"))
    calls = _record_unet_calls(image_to_image)
    generate(image_to_image, "sd-img2img", cache_interval=2)
    assert [mid for _, mid in calls] == [True, False, True, False]
