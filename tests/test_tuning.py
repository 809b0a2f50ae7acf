"""The tuner: its front, FLOP counts, pick, budgets, held-out check and errors, on tiny pipelines."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from helpers import script

import deepcache
from deepcache import (
    DeepCacheSDHelper,
    DeepCacheStableDiffusionPipeline,
    TunedSetting,
    TunedSettingWarning,
    TuningResult,
    tune,
)
from deepcache.measurement import module_flops, step_flops
from deepcache.measurement.fidelity import mean_psnr, mean_ssim
from deepcache.models import cache_aware_class
from deepcache.testing import tiny_pipeline
from deepcache.tuning.families import FAMILIES
from deepcache.tuning.result import TunedPoint, dominates
from deepcache.tuning.search import output_images

STEPS = 10
PROMPTS = ["a red cube", "a blue ball"]
FAST = ["fewer steps", "DeepCache uniform", "DeepCache non-uniform", "pipeline default"]


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline("sd", DeepCacheStableDiffusionPipeline)


def _call(prompt, seed=0):
    return dict(prompt=prompt, generator=torch.Generator().manual_seed(seed))


def _tune(pipe, **kwargs):
    options = dict(target_speedup=2.0, families=FAST, num_inference_steps=STEPS, progress=False)
    return tune(pipe, PROMPTS, seeds=[0], **{**options, **kwargs})


@pytest.fixture(scope="module")
def result(pipe):
    """Every family, with held-out inputs, and timed."""
    return tune(
        pipe,
        PROMPTS,
        seeds=[0],
        held_out_prompts=["a green pyramid"],
        target_speedup=2.0,
        num_inference_steps=STEPS,
        measure_time=True,
        progress=False,
    )


def test_front_is_mutually_non_dominated_and_the_pick_is_the_best_at_the_target(result):
    front = [(p.speedup, p.scores["psnr"]) for p in result.front]
    assert front and all(not dominates(a, b) for a in front for b in front)
    others = [(p.speedup, p.scores["psnr"]) for p in result.points if p not in result.front]
    assert all(any(dominates(f, o) or f == o for f in front) for o in others)
    best = result.chosen
    assert best.speedup >= 2.0
    assert best.scores["psnr"] == max(p.scores["psnr"] for p in result.points if p.speedup >= 2.0)
    assert best in result.front
    families = {p.family for p in result.points}
    assert families == set(FAMILIES), families  # every family measured, each within its budget
    assert all(p.measured_speedup is not None for p in result.front)


def test_the_chosen_setting_reproduces_its_score_applied_to_a_call_and_through_the_helper(pipe, result):
    def images(**kwargs):
        return torch.cat([output_images(pipe(**_call(prompt), output_type="np", **kwargs)) for prompt in PROMPTS])

    reference = images(num_inference_steps=STEPS)
    setting = result.chosen.setting
    assert mean_psnr(reference, images(**setting.kwargs)) == pytest.approx(result.chosen.scores["psnr"], abs=1e-6)
    assert mean_ssim(reference, images(**setting.kwargs)) == pytest.approx(result.chosen.scores["ssim"], abs=1e-6)
    # A DeepCache setting applies to the helper on a plain pipeline, with the same images.
    point = next(p for p in result.points if p.family == "DeepCache non-uniform")
    plain = tiny_pipeline("sd")
    helper = DeepCacheSDHelper(plain)
    helper.set_params(**point.setting.helper_params)
    with helper:
        helped = torch.cat(
            [
                output_images(
                    plain(**_call(prompt), num_inference_steps=point.setting.num_inference_steps, output_type="np")
                )
                for prompt in PROMPTS
            ]
        )
    assert torch.equal(helped, images(**point.setting.kwargs))


def test_flops_equal_the_meta_device_counts_and_a_real_call(pipe, result):
    unet, config = pipe.unet, pipe.unet.config
    with torch.device("meta"):  # the U-Net's inputs under guidance: both halves in one call
        meta_unet = cache_aware_class(unet).from_config(config)
        sample = torch.empty(2, config.in_channels, config.sample_size, config.sample_size)
        hidden = torch.empty(2, pipe.tokenizer.model_max_length, config.cross_attention_dim)
    assert result.reference["iterations"] == STEPS  # one U-Net call per step
    full, _ = step_flops(meta_unet, (sample, torch.tensor(1)), dict(encoder_hidden_states=hidden), 0)
    assert result.reference["flops"] == STEPS * full
    cached_by_branch = {}
    for point in result.points:
        setting = point.setting
        iterations, branch = setting.num_inference_steps, setting.caching.cache_branch_id
        if (
            setting.caching.enabled
            and not setting.caching.adaptive
            and not setting.gating.enabled
            and setting.block_cache is None
        ):
            if branch not in cached_by_branch:
                cached_by_branch[branch] = step_flops(
                    meta_unet, (sample, torch.tensor(1)), dict(encoder_hidden_states=hidden), branch
                )[1]
            cached = cached_by_branch[branch]
            num_full = len(setting.caching.full_steps(iterations))
            assert point.flops == num_full * full + (iterations - num_full) * cached, setting.describe()
        if not setting.caching.enabled and setting.block_cache is None and not setting.gating.enabled:
            real = module_flops(pipe.unet, pipe, **_call(PROMPTS[0]), **setting.kwargs, output_type="np")
            assert point.flops == real and point.speedup == result.reference["flops"] / real
    uniform = next(p for p in result.points if p.family == "DeepCache uniform")
    assert (
        module_flops(pipe.unet, pipe, **_call(PROMPTS[0]), **uniform.setting.kwargs, output_type="np") == uniform.flops
    )


def test_held_out_inputs_rescore_the_pick_and_each_familys_pick(result):
    scored = [p for p in result.points if p.held_out is not None]
    assert result.chosen in scored and {p.family for p in scored} >= {"fewer steps", "pipeline default"}
    check = result.generalisation
    assert check["calibration"] == result.chosen.scores["psnr"] and check["held_out"] == result.chosen.held_out["psnr"]
    assert isinstance(check["flagged"], bool)
    assert "Held-out check" in str(result)


def _point(family, speedup, score, held_out=None):
    return TunedPoint(
        family,
        TunedSetting(10),
        speedup,
        100 / speedup,
        {"psnr": score, "ssim": 1.0},
        None,
        None if held_out is None else {"psnr": held_out, "ssim": 1.0},
    )


def test_a_pick_that_falls_more_than_the_others_or_loses_its_rank_on_held_out_inputs_is_flagged():
    def check(*points):
        return TuningResult(points, 0, {"speedup": 2.0}, "psnr", {}).generalisation

    holds = check(_point("a", 2.0, 40, 37), _point("b", 2.5, 35, 32), _point("c", 3.0, 30, 27))
    assert not holds["flagged"] and holds["usual_drop"] == 3
    overfit = check(_point("a", 2.0, 40, 35), _point("b", 2.5, 35, 32.5), _point("c", 3.0, 30, 27.5))
    assert overfit["flagged"] and "falls 5" in overfit["reasons"][0]
    beaten = check(_point("a", 2.0, 40, 30), _point("b", 2.5, 35, 33))
    assert beaten["flagged"] and any("scores 33 at 2.50x" in r for r in beaten["reasons"])


def test_budget_and_determinism(pipe):
    small = _tune(pipe, max_evaluations=3)
    assert len(small.points) == 3 and "evaluation budget (3)" in small.meta["stopped"]
    again = _tune(pipe, max_evaluations=3)
    assert [p.to_dict() for p in again.points] == [p.to_dict() for p in small.points]
    timed = _tune(pipe, time_budget=1e-9)
    assert timed.points == () and timed.chosen is None and "time budget" in timed.meta["stopped"]


def test_fidelity_target_and_a_users_metric(pipe):
    def negative_mse(reference, candidate):
        return -(reference - candidate).pow(2).mean().item()

    result = _tune(pipe, target_speedup=None, min_fidelity=-1e-4, metric=negative_mse)
    assert result.metric == "metric" and all("metric" in p.scores for p in result.points)
    eligible = [p for p in result.points if p.scores["metric"] >= -1e-4]
    assert result.chosen.speedup == max(p.speedup for p in eligible)
    by_flops = _tune(pipe, target_speedup=None, max_flops=result.reference["flops"] / 2)
    assert (
        by_flops.target == {"max_flops": result.reference["flops"] / 2}
        and by_flops.chosen.flops <= result.reference["flops"] / 2
    )


def test_result_and_setting_round_trip_through_json_and_plot(result, tmp_path):
    result.save(tmp_path / "result.json")
    loaded = TuningResult.load(tmp_path / "result.json")
    assert loaded.to_dict() == json.loads((tmp_path / "result.json").read_text())
    assert [p.setting for p in loaded.points] == [p.setting for p in result.points]
    assert loaded.chosen.setting == result.chosen.setting and str(loaded) == str(result)
    block = next(p.setting for p in result.points if p.setting.block_cache is not None)
    block.save(tmp_path / "setting.json")
    assert TunedSetting.load(tmp_path / "setting.json") == block
    result.plot(tmp_path / "front.png")
    assert (tmp_path / "front.png").stat().st_size > 10_000
    table = result.table()
    assert table.count("**pick**") == 1 and table.count("\n") == len(result.points) + 2


def test_unconditional_pipelines_tune_from_seeds():
    ddim = tiny_pipeline("ddim", deepcache.DeepCacheDDIMPipeline)
    result = tune(
        ddim,
        seeds=[0, 1],
        target_speedup=1.5,
        families=["fewer steps", "DeepCache uniform"],
        num_inference_steps=8,
        batch_size=2,
        progress=False,
    )
    assert result.chosen.speedup >= 1.5 and result.meta["calibration_inputs"] == 2


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(), ValueError, "exactly one of `target_speedup`, `max_flops` and `min_fidelity`"),
        (dict(target_speedup=2, min_fidelity=30), ValueError, "exactly one of"),
        (dict(target_speedup=11), ValueError, "unreachable: with 10 steps the fastest setting (one step) is 10x"),
        (dict(target_speedup=1), ValueError, "`target_speedup` must be greater than 1"),
        (dict(target_speedup="2"), TypeError, "`target_speedup` must be a number"),
        (dict(min_fidelity=101), ValueError, "above what the reference itself scores (psnr 100)"),
        (dict(min_fidelity=1.5, metric="ssim"), ValueError, "above what the reference itself scores (ssim 1)"),
        (dict(target_speedup=2, metric="lpips"), ValueError, "`metric` must be 'psnr', 'ssim' or a callable"),
        (dict(target_speedup=2, families=["DeepCache"]), ValueError, "`families` must name some of"),
        (dict(target_speedup=2, max_evaluations=0), ValueError, "`max_evaluations` must be a positive integer"),
    ],
)
def test_bad_targets_and_arguments_fail_before_any_denoising(pipe, kwargs, error, message):
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(error, match=_escaped(message)):
            tune(pipe, PROMPTS, num_inference_steps=STEPS, progress=False, **kwargs)
    finally:
        hook.remove()
    assert calls == []


def test_targets_out_of_the_families_reach_and_plain_pipelines_get_clear_errors(pipe):
    with pytest.raises(
        ValueError, match=r"unreachable with the families \['DeepCache uniform'\]: the fastest reaches about"
    ):
        _tune(pipe, target_speedup=9.5, families=["DeepCache uniform"])
    with pytest.raises(
        ValueError, match=r"unreachable with the families \['combinations'\]"
    ):  # 6 of 10 steps, one of them full
        _tune(pipe, target_speedup=9.5, families=["combinations"])
    with pytest.raises(ValueError, match="at or above the uncached call's"):
        _tune(pipe, target_speedup=None, max_flops=1e30)
    with pytest.raises(TypeError, match=r"DeepCacheStableDiffusionPipeline.from_pipe\(pipe\)"):
        tune(tiny_pipeline("sd"), PROMPTS, target_speedup=2)


def test_tune_script_writes_the_report_offline(tmp_path):
    result = script("tune").main(
        [
            "--embedded",
            "digits",
            "--target-speedup",
            "2",
            "--steps",
            "6",
            "--inputs",
            "4",
            "--held-out",
            "4",
            "--families",
            "fewer steps",
            "DeepCache uniform",
            "--output-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert result.chosen.speedup >= 2
    assert {p.name for p in tmp_path.iterdir()} == {
        "result.json",
        "setting.json",
        "front.md",
        "front.png",
        "arguments.json",
    }
    assert TunedSetting.load(tmp_path / "setting.json") == result.chosen.setting
    assert not math.isnan(result.generalisation["held_out"])


def _escaped(text):
    import re

    return re.escape(text)


def test_a_setting_records_and_reproduces_the_call_it_was_tuned_under(pipe):
    """A pick tuned at guidance 3 passes guidance 3 again; applied under another guidance or scheduler it warns."""
    result = _tune(pipe, families=["fewer steps"], guidance_scale=3.0)
    setting = result.chosen.setting
    assert setting.call == {"guidance_scale": 3.0} and setting.scheduler == type(pipe.scheduler).__name__
    assert all(
        point.setting.call == setting.call and point.setting.scheduler == setting.scheduler for point in result.points
    )
    assert setting.kwargs == {"guidance_scale": 3.0, **setting.step_kwargs}
    assert TunedSetting.from_dict(json.loads(json.dumps(setting.to_dict()))) == setting
    with warnings.catch_warnings():
        warnings.simplefilter("error", TunedSettingWarning)
        as_tuned = setting.run(pipe, **_call(PROMPTS[0]), output_type="np")
    np.testing.assert_array_equal(as_tuned.images, pipe(**_call(PROMPTS[0]), output_type="np", **setting.kwargs).images)
    with pytest.warns(TunedSettingWarning, match=r"guidance_scale=7.0 \(tuned at 3.0\)"):
        setting.run(pipe, **_call(PROMPTS[0]), guidance_scale=7.0, output_type="np")
    scheduler = type(pipe.scheduler).__name__
    with pytest.warns(TunedSettingWarning, match=rf"scheduler {scheduler} \(tuned with OtherScheduler\)"):
        setting.replace(scheduler="OtherScheduler").run(pipe, **_call(PROMPTS[0]), output_type="np")
    with pytest.raises(TypeError, match=r"\['num_inference_steps'\] are the setting's own"):
        setting.run(pipe, **_call(PROMPTS[0]), num_inference_steps=3)


def test_forecast_points_carry_their_forecast_and_save_with_it(result, tmp_path):
    points = [p for p in result.points if p.family == "forecast"]
    rules = [p.setting.caching.cache_forecast for p in points]
    assert "linear" in rules and "auto" in rules  # DDIM: "auto" is the guided forecast there, so it is measured too
    for index, point in enumerate(points):
        assert "forecast" in point.setting.describe()
        point.setting.save(tmp_path / f"{index}.json")
        assert TunedSetting.load(tmp_path / f"{index}.json") == point.setting
