"""Adaptive DeepCache: full steps decided at run time from the change at the branch."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, HeunDiscreteScheduler
from helpers import CASES, TwoPassPipeline, compile_counting_graphs
from helpers import generate as generate_case
from test_pipeline import STEPS, full_step_iterations, generate, pipelines

from deepcache import (
    CacheRecord,
    DeepCacheConfig,
    DeepCacheSDHelper,
    DeepCacheUNet2DModel,
)
from deepcache.runtime import relative_l1, step_weights
from deepcache.testing import tiny_pipeline, tiny_unet


def test_threshold_zero_makes_every_step_full_and_equals_diffusers_exactly():
    plain, ours = pipelines()
    images = generate(ours, cache_interval=5, cache_threshold=0.0)
    assert np.array_equal(images, generate(plain))
    record = ours.deepcache_record
    assert record.full_steps == tuple(range(STEPS)) and record.threshold == 0.0
    assert record.signals[0] is None and all(s > 0 for s in record.signals[1:])


@pytest.mark.parametrize("interval", [2, 3, 5])
def test_huge_threshold_equals_uniform_deepcache_exactly(interval):
    _, ours = pipelines()
    uniform = generate(ours, cache_interval=interval, cache_branch_id=2)
    iterations, adaptive = full_step_iterations(ours, cache_interval=interval, cache_branch_id=2, cache_threshold=1e9)
    assert np.array_equal(adaptive, uniform)
    assert iterations == list(range(0, STEPS, interval)) == list(ours.deepcache_record.full_steps)


def test_recorded_full_steps_are_where_the_deep_layers_ran_and_follow_the_rule():
    _, ours = pipelines()
    setting = dict(cache_interval=4, cache_min_interval=2, cache_threshold=0.3)
    iterations, images = full_step_iterations(ours, **setting)
    record = ours.deepcache_record
    assert list(record.full_steps) == iterations
    last, decided_by_signal = None, set()
    for step, signal in enumerate(record.signals):
        since = None if last is None else step - last
        expected = since is None or since >= 4 or (since >= 2 and signal >= 0.3)
        assert (step in record.full_steps) == expected, (step, signal)
        if since is not None and 2 <= since < 4:
            decided_by_signal.add(expected)
        last = step if expected else last
    assert decided_by_signal == {True, False}  # the threshold both refreshed and kept the cache
    again = generate(ours, **setting)
    assert np.array_equal(images, again) and ours.deepcache_record == record  # deterministic


def test_compiled_unet_builds_graphs_per_piece_and_none_per_step():
    """Down path to the branch, deep layers, up path: graphs that serve every step and later calls."""
    _, ours = pipelines()
    setting = dict(cache_interval=3, cache_threshold=0.5)
    expected = generate(ours, **setting)
    assert 0 < ours.deepcache_record.cached_fraction < 1
    ours.unet, graphs = compile_counting_graphs(ours.unet)
    np.testing.assert_allclose(generate(ours, **setting), expected, atol=1e-5)
    first_call = len(graphs)
    for steps in (10, 16):
        generate(ours, num_inference_steps=steps, **setting)
    assert len(graphs) == first_call <= 4


def test_signal_accumulates_the_weighted_change_of_the_branch_skip_since_the_last_full_step():
    _, ours = pipelines()
    skips, timesteps, state = [], [], {"step": 0}
    hook = lambda module, inputs, output: skips.append((state["step"], output[0]))  # noqa: E731
    ours.unet.down_blocks[0].attentions[0].register_forward_hook(hook)
    ours.unet.register_forward_pre_hook(lambda module, args: timesteps.append(float(args[1])))

    def count(pipeline, step, timestep, callback_kwargs):
        state["step"] = step + 1
        return {}

    generate(ours, cache_interval=3, cache_branch_id=1, cache_threshold=0.02, callback_on_step_end=count)
    record = ours.deepcache_record
    skip = dict(skips)  # branch 1 is the first down layer's (resnet, attention) output; it runs at every step
    weights = step_weights(ours.scheduler, timesteps)
    assert len(timesteps) == STEPS and weights[0] > weights[-1]  # early, noisy steps pass more of an error on
    for step in range(1, STEPS):
        last_full = max(s for s in record.full_steps if s < step)
        expected = sum(weights[k] * relative_l1(skip[k], skip[last_full]) for k in range(last_full + 1, step + 1))
        assert record.signals[step] == pytest.approx(expected, rel=1e-6)


def test_second_order_scheduler_counts_loop_iterations():
    _, ours = pipelines()
    ours.scheduler = HeunDiscreteScheduler.from_config(ours.scheduler.config)
    iterations, images = full_step_iterations(ours, num_inference_steps=4, cache_interval=3, cache_threshold=1e9)
    assert iterations == [0, 3, 6] and ours.deepcache_record.num_iterations == 7 and np.isfinite(images).all()


def test_every_pipeline_and_the_helper_between_the_two_limits(case):
    """Threshold 0 is the uncached call; a huge one is uniform DeepCache, over the iterations each pipeline runs."""
    cls, _, iterations = CASES[case]
    pipe = tiny_pipeline(case, cls=cls)
    uncached = generate_case(pipe, case)
    assert np.array_equal(generate_case(pipe, case, cache_interval=3, cache_threshold=0.0), uncached)
    assert pipe.deepcache_record.full_steps == tuple(range(iterations))
    uniform = generate_case(pipe, case, cache_interval=3)
    assert np.array_equal(generate_case(pipe, case, cache_interval=3, cache_threshold=1e9), uniform)
    assert pipe.deepcache_record.full_steps == tuple(range(0, iterations, 3))
    plain = tiny_pipeline(case)
    with DeepCacheSDHelper(plain) as helper:
        helper.set_params(
            cache_interval=3, cache_branch_id=pipe.deepcache_defaults.cache_branch_id, cache_threshold=1e9
        )
        assert np.array_equal(generate_case(plain, case), uniform)


def test_separate_cond_and_uncond_calls_take_one_decision_per_iteration():
    pipe = TwoPassPipeline(tiny_unet("ddpm"), DDPMScheduler())
    calls = []
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=4, cache_branch_id=2, cache_threshold=0.45)
        pipe.unet.mid_block.register_forward_hook(lambda *_: calls.append(len(calls)))
        result = pipe(num_inference_steps=12)
        record = pipe.deepcache_record
    assert 1 < len(record.full_steps) < 12
    assert len(calls) == 2 * len(record.full_steps)  # both calls of every full iteration, no other

    # By hand: the first call decides from its own branch tensor, the second follows.
    unet, scheduler = tiny_unet("ddpm", cls=DeepCacheUNet2DModel), DDPMScheduler()
    sample = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    scheduler.set_timesteps(12)
    features, full = {}, set(record.full_steps)
    for i, t in enumerate(scheduler.timesteps):
        outputs = []
        for call, flip in enumerate((False, True)):
            x = sample.flip(-1) if flip else sample
            out, features[call] = unet(
                x,
                t,
                cache_branch_id=2,
                replicate_prev_features=None if i in full else features[call],
                return_dict=False,
            )
            outputs.append(out.flip(-1) if flip else out)
        sample = scheduler.step((outputs[0] + outputs[1]) / 2, t, sample).prev_sample
    assert torch.equal(result, sample)


def test_fixed_schedules_are_recorded_too_and_records_save_and_plot(tmp_path):
    _, ours = pipelines()
    generate(ours, cache_interval=3)
    assert ours.deepcache_record == CacheRecord(STEPS, (0, 3, 6, 9))
    assert str(ours.deepcache_record).endswith("#..#..#..#")
    generate(ours)
    assert ours.deepcache_record is None  # caching off: nothing to record
    generate(ours, cache_interval=3, cache_threshold=0.05)
    record = ours.deepcache_record
    record.save(tmp_path / "record.json")
    assert CacheRecord.load(tmp_path / "record.json") == record
    assert json.loads((tmp_path / "record.json").read_text())["threshold"] == 0.05
    record.plot(tmp_path / "record.png")
    assert (tmp_path / "record.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(cache_interval=3, cache_threshold=-0.1), ValueError, "`cache_threshold` must be a non-negative number"),
        (dict(cache_interval=3, cache_threshold="0.1"), TypeError, "`cache_threshold` must be a non-negative number"),
        (
            dict(cache_interval=3, cache_threshold=float("nan")),
            TypeError,
            "`cache_threshold` must be a non-negative number",
        ),
        (
            dict(cache_interval=3, cache_threshold=0.1, cache_min_interval=4),
            ValueError,
            "`cache_min_interval` must be at most `cache_interval`",
        ),
        (
            dict(cache_interval=3, cache_threshold=0.1, cache_min_interval=0),
            ValueError,
            "`cache_min_interval` must be a positive integer",
        ),
        (dict(cache_interval=3, cache_min_interval=2), ValueError, "`cache_min_interval` applies to adaptive caching"),
        (dict(cache_interval=3, cache_threshold=0.1, uniform=False), ValueError, "leave `uniform`, `pow` and `center`"),
    ],
)
def test_bad_adaptive_arguments_raise_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        DeepCacheConfig(**kwargs)
    _, ours = pipelines()
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate(ours, **kwargs)
