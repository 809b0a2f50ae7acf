"""``cache_forecast="auto"``: the guided forecast, the multistep history, and what it does with each scheduler."""

import math
import warnings

import diffusers
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers
from helpers import TwoPassPipeline
from test_forecast import branch_steps, generate, sd_pipeline

from deepcache import CacheRecord, DeepCacheSDHelper, LinearForecastWarning, auto_forecast
from deepcache.runtime.auto_forecast import guided_extrapolate
from deepcache.testing import tiny_unet

SETTING = dict(cache_interval=3, cache_branch_id=1, guidance_scale=7.5)  # full steps 0, 3, 6, 9 of 10


def with_scheduler(cls, **settings):
    pipe = sd_pipeline()
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **settings)
    return pipe


def test_guided_extrapolate_forecasts_the_first_group_and_carries_the_others_difference():
    last, earlier = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    forecast = guided_extrapolate(last, earlier, 0.5, groups=2)
    first = 1.5 * last[:2] - 0.5 * earlier[:2]
    torch.testing.assert_close(forecast[:2], first)
    torch.testing.assert_close(forecast[2:], first + last[2:] - last[:2])
    torch.testing.assert_close(guided_extrapolate(last, earlier, 0.5, groups=1), 1.5 * last - 0.5 * earlier)


def test_auto_feeds_each_cached_step_the_guided_linear_forecast(monkeypatch):
    pipe = with_scheduler(DDIMScheduler)
    seen = branch_steps(monkeypatch)
    images = generate(pipe, **SETTING, cache_forecast="auto")
    assert np.isfinite(images).all()
    full = {i: used for i, (given, used) in enumerate(seen) if given is None}
    assert sorted(full) == [0, 3, 6, 9]
    for i, (given, _) in enumerate(seen):
        if i in full:
            continue
        k = max(s for s in full if s < i)
        if k == 0:  # one full step so far: reuse, the very tensor
            assert given is full[0]
            continue
        j = max(s for s in full if s < k)
        uncond, cond = full[k].chunk(2)
        forecast = uncond + (i - k) / (k - j) * (uncond - full[j].chunk(2)[0])
        torch.testing.assert_close(given, torch.cat([forecast, forecast + cond - uncond]), rtol=0, atol=1e-6)
    record = pipe.deepcache_record
    assert record.forecast == "DDIMScheduler: guided linear forecast, 2 guidance groups"
    assert "forecast: DDIMScheduler" in str(record) and CacheRecord.from_dict(record.to_dict()) == record


def test_without_guidance_auto_is_the_linear_rule():
    pipe = with_scheduler(DDIMScheduler)
    setting = {**SETTING, "guidance_scale": 1.0}
    assert np.array_equal(
        generate(pipe, **setting, cache_forecast="auto"), generate(pipe, **setting, cache_forecast="linear")
    )


@pytest.mark.parametrize("interval, handed_over", [(3, 3), (2, 0)])
def test_auto_hands_a_multistep_solver_a_history_of_full_steps(monkeypatch, interval, handed_over):
    """At a full step, the solver's entry for a cached step two or more steps past the last full one is the log-SNR
    interpolation between that full step's converted prediction and this one's, by hand; other entries are the
    solver's own."""
    steps = []
    original = DPMSolverMultistepScheduler.step

    def recording(self, model_output, timestep, sample, *args, **kwargs):
        entry = self.model_outputs[-1]
        output = original(self, model_output, timestep, sample, *args, **kwargs)
        steps.append((entry, self.model_outputs[-1], self.step_index - 1))
        return output

    monkeypatch.setattr(DPMSolverMultistepScheduler, "step", recording)
    pipe = with_scheduler(DPMSolverMultistepScheduler, algorithm_type="dpmsolver++", solver_order=2)
    setting = {**SETTING, "cache_interval": interval}
    reuse = generate(pipe, **setting)
    steps.clear()
    auto = generate(pipe, **setting, cache_forecast="auto")
    assert not np.array_equal(auto, reuse) and np.isfinite(auto).all()
    scheduler = pipe.scheduler

    def log_snr(position):
        alpha, sigma = scheduler._sigma_to_alpha_sigma_t(scheduler.sigmas[position])
        return math.log(alpha) - math.log(sigma)

    handed = 0
    for i, (entry, converted, position) in enumerate(steps):
        if i % interval == 0 and interval >= 3 and i > 0:  # full, two cached steps before: its entry for i - 1
            earlier = steps[i - interval][1]
            start = position - interval
            weight = (log_snr(position - 1) - log_snr(start)) / (log_snr(position) - log_snr(start))
            assert 0 < weight < 1
            torch.testing.assert_close(entry, earlier + weight * (converted - earlier), rtol=1e-5, atol=1e-6)
            handed += 1
        elif i > 0:  # the solver's own entry: the previous step's converted prediction
            assert entry is steps[i - 1][1]
    assert handed == handed_over
    assert pipe.deepcache_record.forecast.endswith("history from full steps, 2 guidance groups")


SD_SCHEDULERS = [s.name for s in KarrasDiffusionSchedulers]


@pytest.mark.parametrize("name", SD_SCHEDULERS)
def test_auto_runs_with_every_scheduler_diffusers_ships_for_stable_diffusion(name):
    try:
        cls = getattr(diffusers, name)
        pipe = with_scheduler(cls)
    except (ImportError, AttributeError) as error:  # DPMSolverSDEScheduler needs torchsde
        pytest.skip(f"{name}: {error}")
    plan = auto_forecast(pipe.scheduler)
    setting = {**SETTING, "num_inference_steps": 12}
    auto = generate(pipe, **setting, cache_forecast="auto")
    assert np.isfinite(auto).all()
    assert pipe.deepcache_record.forecast.startswith(plan.reason)
    reuse = generate(pipe, **setting)
    if plan.forecast == "reuse":
        assert np.array_equal(auto, reuse), "auto reuses here: the original's images, bit for bit"
    else:
        assert not np.array_equal(auto, reuse)


def test_what_auto_picks_for_the_solvers_people_sample_with():
    config = sd_pipeline().scheduler.config
    picks = {
        name: (plan.forecast, plan.history)
        for name in (
            "DPMSolverMultistepScheduler",
            "DEISMultistepScheduler",
            "DDIMScheduler",
            "EulerDiscreteScheduler",
            "UniPCMultistepScheduler",
            "PNDMScheduler",
            "EulerAncestralDiscreteScheduler",
        )
        for plan in [auto_forecast(getattr(diffusers, name).from_config(config))]
    }
    assert picks == {
        "DPMSolverMultistepScheduler": ("linear", True),
        "DEISMultistepScheduler": ("linear", True),
        "DDIMScheduler": ("linear", False),
        "EulerDiscreteScheduler": ("linear", False),
        "UniPCMultistepScheduler": ("reuse", False),
        "PNDMScheduler": ("reuse", False),
        "EulerAncestralDiscreteScheduler": ("reuse", False),
    }
    sde = DPMSolverMultistepScheduler.from_config(config, algorithm_type="sde-dpmsolver++")
    assert (auto_forecast(sde).forecast, auto_forecast(sde).history) == ("reuse", False)
    first_order = DPMSolverMultistepScheduler.from_config(config, solver_order=1)
    assert (auto_forecast(first_order).forecast, auto_forecast(first_order).history) == ("linear", False)


def test_linear_warns_with_a_scheduler_it_was_measured_to_hurt_and_names_auto():
    pipe = with_scheduler(DPMSolverMultistepScheduler)
    with pytest.warns(LinearForecastWarning, match="cache_forecast='auto'"):
        generate(pipe, **SETTING, cache_forecast="linear")
    pipe = with_scheduler(DDIMScheduler)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LinearForecastWarning)
        generate(pipe, **SETTING, cache_forecast="linear")
        generate(with_scheduler(DPMSolverMultistepScheduler), **SETTING, cache_forecast="auto")


def test_auto_reuses_when_an_iteration_calls_the_unet_several_times():
    results = {}
    for forecast in ("reuse", "auto"):
        pipe = TwoPassPipeline(tiny_unet("ddpm"), DDIMScheduler())
        with DeepCacheSDHelper(pipe) as helper:
            helper.set_params(cache_interval=3, cache_branch_id=2, cache_forecast=forecast)
            results[forecast] = pipe()
        record = pipe.deepcache_record
    assert torch.equal(results["auto"], results["reuse"])
    assert record.forecast.startswith("reuse (several U-Net calls per iteration)")


def test_auto_with_adaptive_caching_and_after_the_call_the_scheduler_is_untouched():
    pipe = with_scheduler(DPMSolverMultistepScheduler)
    images = generate(pipe, cache_threshold=0.3, cache_interval=4, cache_forecast="auto", guidance_scale=7.5)
    assert np.isfinite(images).all() and "step" not in vars(pipe.scheduler)
    assert len(pipe.deepcache_record.full_steps) < 10
