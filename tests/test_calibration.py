"""Calibrated schedules: measured costs of cached steps, full steps placed by dynamic programming."""

import itertools
import math
import random

import numpy as np
import pytest
import torch
from test_pipeline import STEPS, full_step_iterations, generate, pipelines

import deepcache
import deepcache.testing
from deepcache import DeepCacheConfig, ScheduleCalibration, calibrate_schedule
from deepcache.models import cache_aware
from deepcache.runtime import step_weights


def test_full_steps_are_the_cheapest_schedule_of_their_size():
    rng = random.Random(0)
    steps = 9
    costs = {i: {j: rng.random() * (i - j) for j in range(max(0, i - 4), i)} for i in range(1, steps)}
    calibration = ScheduleCalibration(steps, 1, costs)
    assert calibration.max_interval == 5
    for count in range(2, steps + 1):
        best = min(calibration.cost((0, *rest)) for rest in itertools.combinations(range(1, steps), count - 1))
        chosen = calibration.full_steps(count)
        assert chosen[0] == 0 and len(chosen) == count and calibration.cost(chosen) == pytest.approx(best)
    with pytest.raises(ValueError, match="keeps every run within the calibrated 5"):
        calibration.full_steps(1)
    assert calibration.schedule(3) == calibration.full_steps(3)


def test_weights_follow_sigma_and_the_costs_match_a_hand_computation():
    _, ours = pipelines()
    calibration = calibrate_schedule(
        ours, "a red cube", seeds=[0], branch=2, max_interval=3, num_inference_steps=STEPS, progress=False
    )
    assert calibration.num_steps == STEPS and calibration.branch == 2 and calibration.max_interval == 3
    assert set(calibration.costs) == set(range(1, STEPS)) and set(calibration.costs[5]) == {3, 4}

    inputs = []  # the uncached call's U-Net inputs, by hand
    ours.unet.register_forward_pre_hook(lambda module, args, kwargs: inputs.append((args, kwargs)), with_kwargs=True)
    generate(ours)
    abar = ours.scheduler.alphas_cumprod
    timesteps = [float(args[1]) for args, _ in inputs]
    sigmas = [math.sqrt((1 - abar[int(t)]) / abar[int(t)]) for t in timesteps] + [0.0]
    raw = [abs(sigmas[k] - sigmas[k + 1]) for k in range(STEPS)]
    assert calibration.weights == pytest.approx([w / (sum(raw) / STEPS) for w in raw])
    assert step_weights(object(), timesteps) == [1.0] * STEPS

    def guided(prediction):
        uncond, cond = prediction.chunk(2)
        return uncond + ours.guidance_scale * (cond - uncond)

    (args_i, kwargs_i), (args_j, kwargs_j) = inputs[5], inputs[3]
    with cache_aware(ours.unet) as unet:
        _, features = unet(*args_j, **{**kwargs_j, "cache_branch_id": 2, "return_dict": False})
        cached = unet(
            *args_i, **{**kwargs_i, "cache_branch_id": 2, "replicate_prev_features": features, "return_dict": False}
        )[0]
    full = ours.unet(*args_i, **{**kwargs_i, "return_dict": False})[0]
    error = (guided(cached) - guided(full)).pow(2).mean().sqrt().item()
    assert calibration.costs[5][3] == pytest.approx(calibration.weights[5] * error, rel=1e-5)


def test_calibrated_full_steps_apply_to_a_call_and_round_trip(tmp_path):
    _, ours = pipelines()
    uniform = generate(ours, cache_interval=3, cache_branch_id=2)
    iterations, explicit = full_step_iterations(ours, cache_full_steps=(0, 3, 6, 9), cache_branch_id=2)
    assert iterations == [0, 3, 6, 9] and np.array_equal(explicit, uniform)
    calibration = calibrate_schedule(
        ours, ["a red cube", "a blue ball"], branch=2, max_interval=5, num_inference_steps=STEPS, progress=False
    )
    chosen = calibration.schedule(3)
    iterations, _ = full_step_iterations(ours, cache_full_steps=chosen, cache_branch_id=2)
    assert tuple(iterations) == chosen and ours.deepcache_record.full_steps == chosen
    plain = deepcache.testing.tiny_pipeline("sd")
    with deepcache.DeepCacheSDHelper(plain) as helper:
        helper.set_params(cache_full_steps=chosen, cache_branch_id=2)
        assert np.array_equal(generate(plain), generate(ours, cache_full_steps=chosen, cache_branch_id=2))
    calibration.save(tmp_path / "calibration.json")
    assert ScheduleCalibration.load(tmp_path / "calibration.json") == calibration


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(cache_full_steps=(1, 4)), ValueError, "increasing iteration indices starting at 0"),
        (dict(cache_full_steps=(0, 4, 4)), ValueError, "increasing iteration indices starting at 0"),
        (dict(cache_full_steps="0,3"), TypeError, "must be a sequence of iteration indices"),
        (dict(cache_full_steps=(0, 3), cache_threshold=0.1, cache_interval=3), ValueError, "is a whole schedule"),
        (dict(cache_full_steps=(0, 3), uniform=False), ValueError, "is a whole schedule"),
    ],
)
def test_bad_explicit_schedules_raise_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        DeepCacheConfig(**kwargs)


def test_schedule_longer_than_the_call_and_bad_calibration_arguments():
    _, ours = pipelines()
    with pytest.raises(ValueError, match="names iteration 12, but this call runs 10"):
        generate(ours, cache_full_steps=(0, 5, 12))
    with pytest.raises(ValueError, match="`max_interval` must be an integer of at least 2"):
        calibrate_schedule(ours, "a", max_interval=1)
    with pytest.raises(ValueError, match="`num_full` must be an integer"):
        ScheduleCalibration(3, 0, {1: {0: 1.0}, 2: {1: 1.0}}).full_steps(0)
    helper = deepcache.DeepCacheSDHelper(ours)
    with helper:
        with pytest.raises(ValueError, match="Disable the pipeline's DeepCacheSDHelper"):
            calibrate_schedule(ours, "a")
    assert torch.is_tensor(ours.scheduler.alphas_cumprod)


def test_step_weights_follow_the_schedulers_own_sigmas_and_positions():
    """Sigma schedulers use their ``sigmas``; a loop over part of the timesteps (img2img) or over
    repeated ones (Heun) gets each timestep's own position."""
    from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler

    for scheduler_class in (EulerDiscreteScheduler, HeunDiscreteScheduler):
        scheduler = scheduler_class(num_train_timesteps=1000)
        scheduler.set_timesteps(6)
        sigmas = scheduler.sigmas.tolist()
        raw = [abs(sigmas[k] - sigmas[k + 1]) for k in range(len(scheduler.timesteps))]
        expected = [w / (sum(raw) / len(raw)) for w in raw]
        timesteps = scheduler.timesteps.tolist()
        assert step_weights(scheduler, timesteps) == pytest.approx(expected)
        assert step_weights(scheduler, timesteps[3:]) == pytest.approx(expected[3:])
    assert step_weights(scheduler, [12345.0]) == [1.0]  # not among the scheduler's timesteps: no weighting
