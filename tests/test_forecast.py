"""Forecasting the cached deep feature: the rules, fitted calibrations, and where they apply."""

import json
import re

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler
from helpers import CASES, TwoPassPipeline, compile_counting_graphs
from helpers import generate as generate_case

import deepcache
from deepcache import (
    DeepCacheSDHelper,
    DeepCacheStableDiffusionPipeline,
    DeepCacheUNet2DModel,
    ForecastCalibration,
    calibrate_forecast,
)
from deepcache.models import DeepCacheUNetMixin, cache_aware
from deepcache.schedules import extrapolate, linear_gain, predict, scheduler_facts
from deepcache.testing import tiny_pipeline, tiny_stable_diffusion_components, tiny_unet

STEPS = 10
SETTING = dict(cache_interval=3, cache_branch_id=1)  # full steps 0, 3, 6, 9; linear from iteration 4 on


def sd_pipeline():
    pipe = DeepCacheStableDiffusionPipeline(**tiny_stable_diffusion_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompt="a red cube", seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).images


def branch_steps(monkeypatch):
    """Each U-Net step at a branch as ``(features given, features used)``: given is ``None`` on a full step."""
    seen, original = [], DeepCacheUNetMixin._branch_forward

    def recording(self, views, branch, features, refresh, args, kwargs):
        sample, used = original(self, views, branch, features, refresh, args, kwargs)
        seen.append((features, used))
        return sample, used

    monkeypatch.setattr(DeepCacheUNetMixin, "_branch_forward", recording)
    return seen


def test_reuse_is_the_default_bit_for_bit_and_linear_changes_only_steps_after_two_full_ones(monkeypatch):
    pipe = sd_pipeline()
    default = generate(pipe, **SETTING)
    assert np.array_equal(generate(pipe, **SETTING, cache_forecast="reuse"), default)
    assert np.array_equal(generate(pipe, **SETTING, cache_forecast=None), default)
    seen = branch_steps(monkeypatch)
    linear = generate(pipe, **SETTING, cache_forecast="linear")
    assert not np.array_equal(linear, default) and np.isfinite(linear).all()
    full = {i: used for i, (given, used) in enumerate(seen) if given is None}
    assert sorted(full) == [0, 3, 6, 9]
    for i, (given, _) in enumerate(seen):
        if i in full:
            continue
        if i < 3 + 1:  # one full step so far: reuse, the very tensor
            assert given is full[0]
            continue
        k = max(s for s in full if s < i)
        j = max(s for s in full if s < k)
        expected = full[k] + (i - k) / (k - j) * (full[k] - full[j])
        torch.testing.assert_close(given, expected, rtol=0, atol=1e-6)


def test_separate_cond_and_uncond_calls_forecast_each_from_its_own_features():
    """Two U-Net calls per iteration, through the helper: by hand, each call extrapolates its own full steps."""
    pipe = TwoPassPipeline(tiny_unet("ddpm"), DDPMScheduler())
    with DeepCacheSDHelper(pipe) as helper:
        helper.set_params(cache_interval=3, cache_branch_id=2, cache_forecast="linear")
        result = pipe()

    unet, scheduler = tiny_unet("ddpm", cls=DeepCacheUNet2DModel), DDPMScheduler()
    sample = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    scheduler.set_timesteps(7)
    history = {0: [], 1: []}
    for i, t in enumerate(scheduler.timesteps):
        outputs = []
        for call, flip in enumerate((False, True)):
            x = sample.flip(-1) if flip else sample
            given = None
            if i % 3:
                (j, earlier), (k, last) = ([(None, None)] + history[call])[-2:]
                given = last if j is None else last + (i - k) / (k - j) * (last - earlier)
            out, features = unet(x, t, cache_branch_id=2, replicate_prev_features=given, return_dict=False)
            if given is None:
                history[call].append((i, features))
            outputs.append(out.flip(-1) if flip else out)
        sample = scheduler.step((outputs[0] + outputs[1]) / 2, t, sample).prev_sample
    torch.testing.assert_close(result, sample, rtol=0, atol=1e-5)


def test_extrapolate_and_predict():
    last, earlier = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert extrapolate(last, earlier, 0) is last and linear_gain(7, 3, 6) == 1 / 3
    torch.testing.assert_close(extrapolate(last, earlier, 0.5), 1.5 * last - 0.5 * earlier)
    per_channel = extrapolate(last, earlier, torch.tensor([0.0, 1.0, 2.0]))
    assert torch.equal(per_channel[:, 0], last[:, 0])
    torch.testing.assert_close(per_channel[:, 2], 3 * last[:, 2] - 2 * earlier[:, 2])
    assert predict("linear", [(0, last)], 2) is last  # reuse until two full steps exist
    assert predict("reuse", [(0, earlier), (3, last)], 4) is last


def _calibration(pipe, gains, **changes):
    fields = dict(
        num_steps=STEPS,
        full_steps=(0, 3, 6, 9),
        branch=1,
        gains=gains,
        scheduler=scheduler_facts(pipe.scheduler),
        guidance_scale=7.5,
    )
    return ForecastCalibration(**{**fields, **changes})


def test_a_calibration_with_gain_zero_equals_reuse_exactly_and_its_gains_apply():
    pipe = sd_pipeline()
    reuse = generate(pipe, **SETTING)
    zeros = _calibration(pipe, {i: [0.0] for i in (4, 5, 7, 8)})
    assert np.array_equal(generate(pipe, **SETTING, cache_forecast=zeros), reuse)
    linear = _calibration(pipe, {i: [linear_gain(i, 3 * (i // 3 - 1), 3 * (i // 3))] for i in (4, 5, 7, 8)})
    np.testing.assert_allclose(
        generate(pipe, **SETTING, cache_forecast=linear), generate(pipe, **SETTING, cache_forecast="linear"), atol=1e-6
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"num_inference_steps": 12}, "12 loop iterations (fitted for 10)"),
        ({"cache_interval": 2}, "full steps (0, 2, 4, 6, 8) (fitted for (0, 3, 6, 9))"),
        ({"cache_branch_id": 2}, "branch 2 (fitted for 1)"),
        ({"guidance_scale": 3.0}, "guidance_scale 3 (fitted for 7.5)"),
        ({"scheduler": "euler"}, "scheduler EulerDiscreteScheduler (fitted with DDIMScheduler)"),
        ({"scheduler": "trailing"}, "scheduler timestep_spacing='trailing' (fitted with 'leading')"),
    ],
)
def test_a_calibration_refuses_a_call_it_was_not_fitted_for(call, message):
    pipe = sd_pipeline()
    calibration = _calibration(pipe, {4: [0.5]})
    scheduler = call.pop("scheduler", None)
    if scheduler == "euler":
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    elif scheduler == "trailing":
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, timestep_spacing="trailing")
    with pytest.raises(ValueError, match="was fitted for another call: .*" + re.escape(message)):
        generate(pipe, **{**SETTING, **call}, cache_forecast=calibration)
    assert not pipe.unet._forward_hooks and not pipe.unet._forward_pre_hooks


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"cache_forecast": "quadratic"}, ValueError, "`cache_forecast` must be one of ['reuse', 'linear', 'auto']"),
        ({"cache_forecast": 2}, TypeError, "`cache_forecast` must be None, one of ['reuse', 'linear', 'auto']"),
    ],
)
def test_bad_cache_forecast_values_are_refused_by_name(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        generate(sd_pipeline(), **SETTING, **kwargs)


def test_calibrate_forecast_refuses_what_it_cannot_fit():
    pipe = sd_pipeline()
    calibration = _calibration(pipe, {4: [0.5]})
    with pytest.raises(ValueError, match="adaptive caching"):
        deepcache.DeepCacheConfig(3, cache_threshold=0.1, cache_forecast=calibration)
    for kwargs, error, message in [
        ({}, ValueError, "fits a forecast for a fixed DeepCache schedule"),
        ({"cache_interval": 3, "cache_threshold": 0.2}, ValueError, "fits a forecast for a fixed DeepCache schedule"),
        ({"cache_interval": 3, "cache_forecast": "linear"}, ValueError, "`cache_forecast` is what"),
        ({"cache_interval": 3, "gate_step": 2}, ValueError, "fits DeepCache alone"),
        ({"cache_interval": 3, "per_channel": "yes"}, TypeError, "`per_channel` must be True or False"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            calibrate_forecast(pipe, "a cube", num_inference_steps=STEPS, **kwargs)


def test_calibrate_forecast_fits_the_least_squares_gain_on_the_cached_trajectory(monkeypatch, tmp_path):
    pipe = sd_pipeline()
    kwargs = dict(num_inference_steps=STEPS, guidance_scale=7.5, per_channel=False, progress=False, **SETTING)
    calibration = calibrate_forecast(pipe, "a red cube", seeds=[0], **kwargs)
    assert (calibration.num_steps, calibration.full_steps, calibration.branch) == (STEPS, (0, 3, 6, 9), 1)
    assert calibration.scheduler["class"] == "DDIMScheduler" and calibration.meta["runs"] == 1
    scores = calibration.meta["calibration_psnr"]
    assert scores[calibration.meta["chosen"]] == max(scores.values())
    assert list(scores) == [
        "reuse",
        "fitted",
        "linear x0.25",
        "linear x0.5",
        "linear x0.75",
        "linear x1",
        "linear x1.25",
    ]
    # The check picks the best candidate on the calibration inputs: scored so that the fit wins, it is the fit.
    order = iter([1.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0])  # reuse, fitted, the linear multiples
    monkeypatch.setattr("deepcache.measurement.forecast.mean_psnr", lambda reference, images: next(order))
    calibration = calibrate_forecast(pipe, "a red cube", seeds=[0], **kwargs)
    assert calibration.meta["chosen"] == "fitted" and sorted(calibration.gains) == [4, 5, 7, 8]
    monkeypatch.undo()

    # By hand: up to iteration 4 the fitting run's trajectory is reuse's; the gain at 4 is the least-squares fit
    # of the deep feature the U-Net computes on iteration 4's inputs to F_3 + a (F_3 - F_0).
    seen = branch_steps(monkeypatch)
    inputs = []
    pipe.unet.register_forward_pre_hook(lambda module, args, kwargs: inputs.append((args, kwargs)), with_kwargs=True)
    generate(pipe, **SETTING, guidance_scale=7.5)
    args, kwargs = inputs[4]
    drop = ("replicate_prev_features", "cache_branch_id", "return_dict")
    kwargs = {k: v for k, v in kwargs.items() if k not in drop}
    monkeypatch.undo()
    with cache_aware(pipe.unet) as unet:
        _, features = unet(*args, **kwargs, cache_branch_id=1, return_dict=False)
    f0, f3 = seen[0][1], seen[3][1]
    step, residual = (f3 - f0).double(), (features - f3).double()
    expected = ((residual * step).sum() / (step * step).sum()).item()
    assert calibration.gains[4][0] == pytest.approx(expected, rel=1e-4)

    calibration.save(tmp_path / "forecast.json")
    loaded = ForecastCalibration.load(tmp_path / "forecast.json")
    assert loaded == calibration and json.loads((tmp_path / "forecast.json").read_text())["gains"]["4"]
    images = generate(pipe, **SETTING, guidance_scale=7.5, cache_forecast=loaded)
    assert np.isfinite(images).all()
    calibration.plot(tmp_path / "forecast.png")
    assert (tmp_path / "forecast.png").stat().st_size > 0 and "4 fitted gains" in repr(calibration)


def test_per_channel_calibration_has_one_gain_per_feature_channel_and_never_loses_to_reuse_or_linear():
    pipe = sd_pipeline()
    calibration = calibrate_forecast(
        pipe, ["a red cube", "a blue ball"], num_inference_steps=STEPS, progress=False, **SETTING
    )
    meta, channels = calibration.meta, pipe.unet.config.block_out_channels[0]
    assert meta["per_channel"] and meta["runs"] == 2
    if meta["chosen"] == "fitted":
        assert all(len(g) == channels for g in calibration.gains.values())
    scores = meta["calibration_psnr"]
    assert scores[meta["chosen"]] >= max(scores["reuse"], scores["linear x1"])


def test_compiled_unet_builds_no_extra_graph_for_the_forecast():
    pipe = sd_pipeline()
    expected = generate(pipe, **SETTING, cache_forecast="linear")
    pipe.unet, graphs = compile_counting_graphs(pipe.unet)
    for _ in range(2):
        np.testing.assert_allclose(generate(pipe, **SETTING, cache_forecast="linear"), expected, atol=1e-5)
    assert len(graphs) == 2  # one full, one cached: the forecast is arithmetic outside them


@pytest.mark.parametrize("kind", sorted(CASES))
def test_linear_forecast_runs_on_every_pipeline_kind(kind, monkeypatch):
    pipe = tiny_pipeline(kind, cls=CASES[kind][0])
    seen = branch_steps(monkeypatch)
    linear = generate_case(pipe, kind, cache_interval=2, cache_forecast="linear")
    full = [used for given, used in seen if given is None]
    forecast = [given for given, _ in seen if given is not None and all(given is not f for f in full)]
    assert np.isfinite(linear).all() and len(full) >= 2 and forecast  # fed forecasts, not stored features


def test_adaptive_caching_and_second_order_schedulers_take_the_forecast():
    pipe = sd_pipeline()
    adaptive = dict(cache_interval=4, cache_threshold=0.4, cache_branch_id=1)
    reuse = generate(pipe, **adaptive)
    full_steps = pipe.deepcache_record.full_steps
    assert len(full_steps) >= 2
    linear = generate(pipe, **adaptive, cache_forecast="linear")
    assert np.isfinite(linear).all() and not np.array_equal(linear, reuse)
    pipe.scheduler = HeunDiscreteScheduler.from_config(pipe.scheduler.config)
    heun_reuse = generate(pipe, num_inference_steps=6, **SETTING)
    heun_linear = generate(pipe, num_inference_steps=6, **SETTING, cache_forecast="linear")
    assert np.isfinite(heun_linear).all() and not np.array_equal(heun_linear, heun_reuse)
    assert pipe.deepcache_record.num_iterations == 11  # Heun: two U-Net calls per step but the last
