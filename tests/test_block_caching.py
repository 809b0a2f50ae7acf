"""Block Caching: the accumulation rule, schedules, profiling, and caching in every pipeline."""

import contextlib
import gc

import numpy as np
import pytest
import torch
from conftest import CACHE_CLASSES
from diffusers.models.resnet import ResnetBlock2D
from helpers import CASES, STEPS, generate

import deepcache
from deepcache import (
    BlockCacheProfile,
    BlockCacheSchedule,
    block_units,
    profile_blocks,
    recompute_steps,
)
from deepcache.measurement.profiling import relative_l1
from deepcache.runtime import BlockCacheRun
from deepcache.schedules.block_caching import derive_schedule, flop_fraction
from deepcache.testing import tiny_pipeline, tiny_unet, tiny_unet_inputs

# --- the accumulation rule and schedules, on hand-made curves ---


def test_recompute_steps_follow_the_accumulation_rule():
    changes = [0.0, 0.2, 0.2, 0.2, 0.5, 0.1, 0.05]
    # sums since the last compute: .2 .4 .6>.5 -> 3 (restart) | .5 (not above) .6>.5 -> 5 | .05
    assert recompute_steps(changes, 0.5) == (0, 3, 5)
    assert recompute_steps(changes, 0.39) == (0, 2, 4)  # .2 .4 -> 2 | .2 .7 -> 4 | .1 .15
    assert recompute_steps(changes, 0) == tuple(range(7))
    assert recompute_steps(changes, 10) == (0,)
    assert recompute_steps([0.0, 0.0, 0.0], 0) == (0, 1, 2)  # delta 0 computes even unchanged units


@pytest.mark.parametrize(
    "delta, error", [(-0.1, ValueError), (float("nan"), TypeError), ("0.5", TypeError), (True, TypeError)]
)
def test_bad_delta_is_refused(delta, error):
    with pytest.raises(error, match="`delta` must be"):
        recompute_steps([0.0, 1.0], delta)


def test_schedule_data_flop_fraction_and_json(tmp_path):
    schedule = derive_schedule({"a": [0, 0.3, 0.3, 0.3], "b": [0, 0.1, 0.1, 0.1]}, 0.5)
    assert schedule == BlockCacheSchedule(4, {"a": (0, 2), "b": (0,)}, 0.5)
    assert [schedule.reused_units(step) for step in range(5)] == [(), ("a", "b"), ("b",), ("a", "b"), ()]
    # a (10 FLOPs) is skipped twice, b (20) three times, of 4 x 100
    assert flop_fraction(schedule, {"a": 10, "b": 20}, 100) == pytest.approx(1 - 80 / 400)
    schedule.save(tmp_path / "s.json")
    assert BlockCacheSchedule.load(tmp_path / "s.json") == schedule
    assert str(schedule).splitlines()[1:] == ["a #.#.   2", "b #...   1"]


@pytest.mark.parametrize(
    "recompute, message",
    [
        ({"a": (1, 2)}, "starting with 0"),
        ({"a": (0, 2, 1)}, "increasing"),
        ({"a": (0, 4)}, r"\[0, 3\]"),
        ({}, "non-empty"),
    ],
)
def test_malformed_schedules_are_refused(recompute, message):
    with pytest.raises((ValueError, TypeError), match=message):
        BlockCacheSchedule(4, recompute)


def test_curves_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="same length"):
        derive_schedule({"a": [0, 1], "b": [0, 1, 1]}, 0.5)


def _hand_profile():
    changes = {"a": [0, 0.3, 0.3, 0.3, 0.3], "b": [0, 0.05, 0.05, 0.05, 0.05]}
    return BlockCacheProfile(changes, {"a": 30, "b": 20}, 100)


def test_delta_for_speedup_finds_the_smallest_delta_that_reaches_it():
    profile = _hand_profile()
    assert profile.max_speedup() == pytest.approx(1 / (1 - (30 * 4 + 20 * 4) / 500))
    for target in (1.1, 1.4, 1.6):
        delta = profile.delta_for_speedup(target)
        assert 1 / profile.schedule(delta).flop_fraction >= target
        assert 1 / profile.schedule(max(delta - 1e-3, 0)).flop_fraction < target
    assert profile.delta_for_speedup(1) == 0
    with pytest.raises(ValueError, match="out of reach"):
        profile.delta_for_speedup(3)


# --- the mechanism: what a step that reuses a unit computes ---


@pytest.mark.parametrize("kind", ["sd1.5", "svd", "ddpm"])
def test_reusing_a_unit_adds_the_given_residual_to_its_input(kind):
    ours, plain = tiny_unet(kind, cls=CACHE_CLASSES[kind]), tiny_unet(kind)
    args, kwargs = tiny_unet_inputs(kind)
    units = block_units(ours, "all")
    sample, extras = ours(*args, **kwargs, block_cache_units=units, return_dict=False)
    residuals = extras["block_residuals"]
    assert list(extras) == ["block_residuals"]
    assert torch.equal(sample, plain(*args, **kwargs, return_dict=False)[0])  # computing every unit changes nothing

    attention, resnet = block_units(ours)[0], next(u for u in units if "up_blocks" in u and "resnets" in u)
    given = {name: torch.randn_like(residuals[name]) for name in (attention, resnet)}
    sample, extras = ours(*args, **kwargs, block_cache_units=units, block_cache_residuals=given, return_dict=False)
    returned = extras["block_residuals"]
    assert all(returned[name] is given[name] for name in given)

    with units_replaced_by_hand(plain, given):  # the plain model, with the units' outputs replaced by hand
        expected = plain(*args, **kwargs, return_dict=False)[0]
    torch.testing.assert_close(sample, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(sample, plain(*args, **kwargs, return_dict=False)[0])


@contextlib.contextmanager
def units_replaced_by_hand(model, given):
    """Within the block, each unit of ``given`` outputs its skip path plus the given residual, by forward hooks."""

    def hook(name):
        def replace(module, module_args, module_kwargs, output):
            unit_input = (
                module_args[0] if module_args else module_kwargs.get("input_tensor", module_kwargs.get("hidden_states"))
            )
            tensor = skip_path_by_hand(module, unit_input, given[name].shape) + given[name]
            return (tensor,) if isinstance(output, tuple) else tensor

        return replace

    handles = [model.get_submodule(name).register_forward_hook(hook(name), with_kwargs=True) for name in given]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def skip_path_by_hand(module, x, shape):
    """The input, or for a 2D resnet its 1x1 shortcut of the input over its output scale; 0 if the output is cached
    whole."""
    if isinstance(module, ResnetBlock2D):
        return (x if module.conv_shortcut is None else module.conv_shortcut(x)) / module.output_scale_factor
    return x if x.shape == shape else 0  # e.g. SVD's spatio-temporal resnets that change channels


def test_unit_arguments_are_checked():
    unet = tiny_unet("ddpm", cls=deepcache.DeepCacheUNet2DModel)
    args, _ = tiny_unet_inputs("ddpm")
    with pytest.raises(ValueError, match=r"units \['down_blocks.0.downsamplers.0'\] are not in this"):
        unet(*args, block_cache_units=["down_blocks.0.downsamplers.0"])
    with pytest.raises(TypeError, match="sequence of unit names"):
        unet(*args, block_cache_units="down_blocks.1.attentions.0")
    with pytest.raises(ValueError, match=r"units \['mid_block.attentions.7'\] are not in this"):
        unet(*args, block_cache_residuals={"mid_block.attentions.7": args[0]})
    with pytest.raises(ValueError, match="`units` must be one of"):
        block_units(unet, "transformers")


# --- profiling ---


def test_profile_matches_a_direct_computation_of_the_relative_l1_change():
    pipe = tiny_pipeline("ddpm")
    units = block_units(pipe.unet, "all")
    residuals = {unit: [] for unit in units}  # per run, per iteration

    def record(name):
        def hook(module, module_args, output):
            tensor = output[0] if isinstance(output, tuple) else output
            residuals[name].append(tensor - skip_path_by_hand(module, module_args[0], tensor.shape))

        return hook

    handles = [pipe.unet.get_submodule(unit).register_forward_hook(record(unit)) for unit in units]
    for seed in (0, 1):
        pipe(batch_size=2, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed), output_type="np")
    for handle in handles:
        handle.remove()

    profile = profile_blocks(pipe, seeds=[0, 1], units="all", batch_size=2, num_inference_steps=STEPS, progress=False)
    assert type(pipe.unet) is deepcache.DeepCacheUNet2DModel._deepcache_parent  # left as found
    assert profile.units == units and profile.num_steps == STEPS and profile.runs == 2
    for unit in units:
        runs = [residuals[unit][:STEPS], residuals[unit][STEPS:]]
        expected = [0.0] + [
            np.mean(
                [float(((r[k] - r[k - 1]).abs().sum((1, 2, 3)) / r[k - 1].abs().sum((1, 2, 3))).mean()) for r in runs]
            )
            for k in range(1, STEPS)
        ]
        np.testing.assert_allclose(profile.changes[unit], expected, rtol=1e-5)
    assert 0 < sum(profile.unit_flops.values()) < profile.step_flops
    assert all(profile.unit_flops[unit] > 0 for unit in units)


def test_relative_l1_is_per_row_then_averaged():
    previous = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    current = torch.tensor([[2.0, 1.0], [2.0, 2.0]])
    assert relative_l1(current, previous).item() == pytest.approx((1 / 2 + 0 / 4) / 2)


def test_profile_round_trips_through_json_and_plots(tmp_path):
    profile = profile_blocks(
        tiny_pipeline("sd"), ["a red cube", "a blue ball"], seeds=[0], num_inference_steps=5, progress=False
    )
    assert profile.runs == 2 and profile.meta["pipeline"] == "StableDiffusionPipeline"
    assert profile.units == block_units(tiny_pipeline("sd").unet)
    profile.save(tmp_path / "profile.json")
    assert BlockCacheProfile.load(tmp_path / "profile.json") == profile
    figure = profile.plot(tmp_path / "profile.png", [profile.schedule(0.2)])
    assert len(figure.axes) == 2 and len(figure.axes[0].lines) == len(profile.units)
    assert (tmp_path / "profile.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_arguments_are_checked():
    pipe = tiny_pipeline("ddpm")
    with pytest.raises(TypeError, match="`seeds` must be"):
        profile_blocks(pipe, seeds=["0"])
    with pytest.raises(ValueError, match="either `prompts`"):
        profile_blocks(pipe, "a", calls=[{}])
    with pytest.raises(ValueError, match="`units` must be one of"):
        profile_blocks(pipe, units="convs", num_inference_steps=2)
    assert type(pipe.unet) is deepcache.DeepCacheUNet2DModel._deepcache_parent


# --- pipelines ---


def _profile(kind, **kwargs):
    pipe = tiny_pipeline(kind, CASES[kind][0])
    return pipe, profile_blocks(
        pipe, calls=[{**CASES[kind][1], "num_inference_steps": STEPS}], progress=False, **kwargs
    )


def test_delta_zero_equals_the_uncached_pipeline_and_flops_fall_as_delta_grows(case):
    pipe, profile = _profile(case)
    expected = generate(pipe, case)
    assert np.array_equal(generate(pipe, case, block_cache=profile.schedule(0)), expected)
    fractions = [profile.schedule(delta).flop_fraction for delta in (0, 0.05, 0.2, 1, 100)]
    assert fractions[0] == 1 and fractions == sorted(fractions, reverse=True) and fractions[-1] < 1
    cached = generate(pipe, case, block_cache=profile.schedule(100))
    assert cached.shape == expected.shape and np.isfinite(cached).all() and not np.array_equal(cached, expected)


def test_each_call_reuses_the_units_the_schedule_says(monkeypatch):
    pipe, profile = _profile("sd", units="all")
    schedule = profile.schedule(0.3)
    assert any(schedule.reused_units(k) for k in range(STEPS)) and any(len(s) > 1 for s in schedule.recompute.values())
    seen, units_set = [], deepcache.models.branches.units_set

    def spy(wrappers, units, residuals):
        seen.append(tuple(residuals))
        return units_set(wrappers, units, residuals)

    monkeypatch.setattr(deepcache.models.branches, "units_set", spy)
    generate(pipe, "sd", block_cache=schedule)
    assert seen == [schedule.reused_units(k) for k in range(STEPS)]


def test_block_cache_errors_are_clear():
    pipe, profile = _profile("ddpm")
    with pytest.raises(ValueError, match=f"derived for {STEPS} loop iterations, but this call runs 3"):
        generate(pipe, "ddpm", num_inference_steps=3, block_cache=profile.schedule(0.1))
    foreign = BlockCacheSchedule(STEPS, {"up_blocks.9.attentions.0": (0,)})
    with pytest.raises(ValueError, match=r"names units \['up_blocks.9.attentions.0'\]"):
        generate(pipe, "ddpm", block_cache=foreign)
    with pytest.raises(TypeError, match="must be a BlockCacheSchedule"):
        generate(pipe, "ddpm", block_cache=profile)


def test_helper_applies_a_schedule_and_disable_restores():
    pipe, profile = _profile("sd")
    schedule = profile.schedule(1)
    plain = tiny_pipeline("sd")
    before = generate(plain, "sd")
    with deepcache.DeepCacheSDHelper(plain) as helper:
        helper.set_params(block_cache=schedule)
        assert np.array_equal(generate(plain, "sd"), generate(pipe, "sd", block_cache=schedule))
        with pytest.raises(ValueError, match="Disable the pipeline's DeepCacheSDHelper"):
            profile_blocks(plain, "a")
    assert np.array_equal(generate(plain, "sd"), before)


def test_no_block_cache_state_survives_a_call_even_one_that_raises():
    pipe, profile = _profile("sd")
    schedule = profile.schedule(0.5)

    def explode(pipeline, step, timestep, callback_kwargs):
        if step == 3:
            raise RuntimeError("stop")
        return {}

    with pytest.raises(RuntimeError, match="stop"):
        generate(pipe, "sd", block_cache=schedule, callback_on_step_end=explode)
    assert not pipe.unet._forward_hooks and not pipe.unet._forward_pre_hooks
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, BlockCacheRun)]
    assert np.array_equal(
        generate(pipe, "sd", block_cache=schedule), generate(_profile("sd")[0], "sd", block_cache=schedule)
    )


def test_a_profile_from_a_saved_pipeline_applies_to_the_loaded_one(tmp_path):
    pipe, profile = _profile("ddpm")
    pipe.save_pretrained(tmp_path / "pipe")
    profile.schedule(0.2).save(tmp_path / "schedule.json")
    loaded = deepcache.DeepCacheDDPMPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    schedule = BlockCacheSchedule.load(tmp_path / "schedule.json")
    assert np.array_equal(
        generate(loaded, "ddpm", block_cache=schedule), generate(pipe, "ddpm", block_cache=profile.schedule(0.2))
    )


# --- DeepCache and Block Caching composed ---


def test_composed_steps_equal_deepcache_with_the_shallow_units_replaced_by_hand(kind):
    ours, reference = tiny_unet(kind, cls=CACHE_CLASSES[kind]), tiny_unet(kind, cls=CACHE_CLASSES[kind])
    args, kwargs = tiny_unet_inputs(kind)
    units, branch = block_units(ours, "all"), ours.deepcache_layout.num_branches // 2
    full, features = reference(*args, **kwargs, cache_branch_id=branch, return_dict=False)
    sample, extras = ours(*args, **kwargs, cache_branch_id=branch, block_cache_units=units, return_dict=False)
    composed_features, residuals = extras["features"], extras["block_residuals"]
    assert torch.equal(sample, full) and torch.equal(composed_features, features) and set(residuals) == set(units)

    ran = set()
    for name in units:
        reference.get_submodule(name).register_forward_hook(lambda *_, name=name: ran.add(name))
    other = (args[0] + 0.1, *args[1:])
    expected_plain = reference(*other, **kwargs, cache_branch_id=branch, replicate_prev_features=features).sample
    shallow = [name for name in units if name in ran]  # the units a cached step at this branch runs
    assert 0 < len(shallow) < len(units) and "mid_block" not in " ".join(shallow)
    given = {name: torch.randn_like(residuals[name]) for name in (shallow[0], shallow[-1])}
    step, extras = ours(
        *other,
        **kwargs,
        cache_branch_id=branch,
        replicate_prev_features=features,
        block_cache_units=units,
        block_cache_residuals=given,
        return_dict=False,
    )
    kept, returned = extras["features"], extras["block_residuals"]
    assert kept is features and set(returned) == set(shallow) and all(returned[n] is given[n] for n in given)

    with units_replaced_by_hand(reference, given):  # the cached step, with the units' outputs replaced by hand
        expected = reference(*other, **kwargs, cache_branch_id=branch, replicate_prev_features=features).sample
    torch.testing.assert_close(step, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(step, expected_plain)


def test_deepcache_with_block_caching_in_one_call():
    pipe, profile = _profile("sd", units="all")
    deepcache_only = generate(pipe, "sd", cache_interval=3, cache_branch_id=2)
    record = pipe.deepcache_record
    assert np.array_equal(
        generate(pipe, "sd", cache_interval=3, cache_branch_id=2, block_cache=profile.schedule(0)), deepcache_only
    )
    assert pipe.deepcache_record == record
    both = generate(pipe, "sd", cache_interval=3, cache_branch_id=2, block_cache=profile.schedule(0.3))
    assert np.isfinite(both).all() and not np.array_equal(both, deepcache_only)
    assert np.array_equal(
        generate(
            pipe, "sd", cache_interval=3, cache_branch_id=2, cache_threshold=1e9, block_cache=profile.schedule(0.3)
        ),
        both,
    )
    plain = tiny_pipeline("sd")
    with deepcache.DeepCacheSDHelper(plain) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=2, block_cache=profile.schedule(0.3))
        assert np.array_equal(generate(plain, "sd"), both)
