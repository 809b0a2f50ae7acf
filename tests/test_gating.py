"""Cross-attention gating (T-GATE): record at the gate, replay after it, alone and with caching."""

import itertools
import warnings

import numpy as np
import pytest
import torch
from conftest import CACHE_CLASSES
from helpers import CASES
from helpers import generate as generate_case
from test_pipeline import STEPS, generate, pipelines

import deepcache
from deepcache import (
    DeepCacheSDHelper,
    DeepCacheUNet2DConditionModel,
    GateStepWarning,
    GatingConfig,
    block_units,
)
from deepcache.models import cross_attention_names
from deepcache.runtime import compose
from deepcache.testing import tiny_pipeline, tiny_unet, tiny_unet_inputs


def test_replayed_cross_attention_makes_the_text_irrelevant():
    """Text enters an SD U-Net only through cross-attention: replaying it gives the recorded text's output."""
    plain, ours = tiny_unet("sd1.5"), tiny_unet("sd1.5", cls=DeepCacheUNet2DConditionModel)
    args, _ = tiny_unet_inputs("sd1.5")
    names = cross_attention_names(ours)
    assert names and all(name.endswith("attn2") for name in names)
    sample, extras = ours(*args, cross_attention_record=True, return_dict=False)
    outputs = extras["cross_attention_outputs"]
    assert torch.equal(sample, plain(*args).sample) and list(outputs) == list(names)
    ran = []
    for name in names:
        ours.get_submodule(name).register_forward_hook(lambda *_, name=name: ran.append(name))
    other_text = (args[0], args[1], torch.randn_like(args[2]))
    replayed = ours(*other_text, cross_attention_replay=outputs).sample
    assert torch.equal(replayed, sample) and not ran
    assert not torch.allclose(plain(*other_text).sample, sample)


def test_gating_composes_with_cached_steps_and_block_caching_units(kind):
    """Replaying a step's own cross-attention outputs, with every mechanism at once, reproduces that step."""
    if kind == "ddpm":
        pytest.skip("the DDPM U-Net has no cross-attention")
    ours = tiny_unet(kind, cls=CACHE_CLASSES[kind])
    args, kwargs = tiny_unet_inputs(kind)
    units, names = block_units(ours, "all"), cross_attention_names(ours)
    full, extras = ours(
        *args, **kwargs, cache_branch_id=2, block_cache_units=units, cross_attention_record=True, return_dict=False
    )
    assert list(extras) == ["features", "block_residuals", "cross_attention_outputs"]
    features, residuals, outputs = extras["features"], extras["block_residuals"], extras["cross_attention_outputs"]
    assert (
        torch.equal(full, ours(*args, **kwargs).sample)
        and list(outputs) == list(names)
        and set(residuals) == set(units)
    )
    ran = []
    for name in names:
        ours.get_submodule(name).register_forward_hook(lambda *_, name=name: ran.append(name))
    cached = ours(
        *args,
        **kwargs,
        cache_branch_id=2,
        replicate_prev_features=features,
        block_cache_units=units,
        cross_attention_replay=outputs,
    )
    assert torch.equal(cached.sample, full) and not ran
    assert cached.cross_attention_outputs is None and 0 < len(cached.block_residuals) < len(units)


def test_gate_after_the_last_iteration_equals_diffusers_exactly_and_warns():
    plain, ours = pipelines()
    for gate_step in (STEPS, STEPS + 5):
        with pytest.warns(
            GateStepWarning, match=f"`gate_step={gate_step}` gates nothing: this call runs {STEPS} denoising"
        ):
            gated = generate(ours, gate_step=gate_step)
        assert np.array_equal(gated, generate(plain))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GateStepWarning)
        generate(ours, gate_step=STEPS - 1)  # the last iteration reuses: no warning


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_composed_runs_in_any_order_give_identical_images(order, monkeypatch):
    """Outputs travel by name and only gating reshapes the call, after every run added its arguments:
    the registry's order does not change what a call computes."""
    _, ours = pipelines()
    units = block_units(ours.unet, "attentions")
    schedule = deepcache.BlockCacheSchedule(STEPS, {unit: tuple(range(0, STEPS, 2)) for unit in units})
    options = dict(cache_interval=3, cache_branch_id=1, gate_step=3, block_cache=schedule)
    expected = generate(ours, **options)
    monkeypatch.setattr(compose, "TECHNIQUES", tuple(compose.TECHNIQUES[i] for i in order))
    assert np.array_equal(generate(ours, **options), expected)


def test_after_the_gate_cross_attention_stops_and_the_guided_batch_halves():
    _, ours = pipelines()
    batches, attended, state = [], [], {"step": 0}
    ours.unet.conv_in.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    for name in cross_attention_names(ours.unet):
        ours.unet.get_submodule(name).register_forward_hook(lambda *_: attended.append(state["step"]))

    def count(pipeline, step, timestep, callback_kwargs):
        state["step"] = step + 1
        return {}

    gated = generate(ours, gate_step=4, callback_on_step_end=count)
    assert batches == [2] * 4 + [1] * (STEPS - 4)
    assert sorted(set(attended)) == [0, 1, 2, 3]
    assert np.isfinite(gated).all() and np.array_equal(gated, generate(ours, gate_step=4))
    batches.clear()
    generate(ours, gate_step=4, guidance_scale=1.0)  # no guidance batch: nothing to halve
    assert batches == [1] * STEPS


def test_gating_with_deepcache_and_with_adaptive_deepcache():
    _, ours = pipelines()
    full, state = [], {"step": 0}
    ours.unet.mid_block.register_forward_hook(lambda *_: full.append(state["step"]))

    def count(pipeline, step, timestep, callback_kwargs):
        state["step"] = step + 1
        return {}

    both = generate(ours, cache_interval=3, gate_step=5, callback_on_step_end=count)
    assert full == [0, 3, 6, 9] and np.isfinite(both).all()
    assert not np.array_equal(both, generate(ours, cache_interval=3))
    adaptive = generate(ours, cache_interval=3, cache_threshold=1e9, gate_step=5)
    assert np.array_equal(adaptive, both)  # a huge threshold is uniform N = 3, also across the halving
    generate(ours, cache_interval=3, cache_threshold=0.3, gate_step=5)
    assert ours.deepcache_record.signals[6] is not None  # the signal after the halving compares conditional halves


def test_every_cross_attention_pipeline_and_the_helper(case):
    cls, _, iterations = CASES[case]
    pipe = tiny_pipeline(case, cls=cls)
    if not cross_attention_names(pipe.unet):
        with pytest.raises(ValueError, match="has no cross-attention layers"):
            generate_case(pipe, case, gate_step=2)
        return
    uncached = generate_case(pipe, case)
    assert np.array_equal(generate_case(pipe, case, gate_step=iterations), uncached)
    gated = generate_case(pipe, case, gate_step=2, cache_interval=2)
    assert gated.shape == uncached.shape and np.isfinite(gated).all()
    plain = tiny_pipeline(case)
    with DeepCacheSDHelper(plain) as helper:
        helper.set_params(cache_interval=2, cache_branch_id=pipe.deepcache_defaults.cache_branch_id, gate_step=2)
        assert np.array_equal(generate_case(plain, case), gated)


@pytest.mark.parametrize("gate_step, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_gate_steps_raise_clear_errors(gate_step, error):
    with pytest.raises(error, match="`gate_step` must be a positive integer"):
        GatingConfig(gate_step=gate_step)
    with pytest.raises(error, match="`gate_step` must be a positive integer"):  # a call refuses it before denoising
        pipelines()[1]("a cube", num_inference_steps=2, gate_step=gate_step)
