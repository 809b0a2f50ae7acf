"""Speed of cached U-Net denoising loops: FLOPs, wall time, memory, and the original helper.

The U-Net loop is timed (DDIM updates included, text encoders and VAE not), since that is all
caching changes; :func:`pipeline_and_loop_seconds` also times the whole pipeline call beside it, so
that what the pipeline, the hooks and the runs add is visible. Speed does not depend on weight values, so the SD, SDXL,
SVD and LDM-4-G architectures run
with random weights; the embedded digits and emoji models run with their trained weights. On CPU the runs use
the threads they are given and are interleaved (baseline, then every setting, repeated) so that
drifts in machine speed hit all alike; on CUDA they are timed with CUDA events.
"""

from __future__ import annotations

import copy
import platform
import statistics
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

from ..measurement import ideal_speedup, step_flops
from ..runtime import DeepCacheConfig, relative_l1
from ..schedules import ForecastCalibration, forecast_depth, predict
from .benchmark_models import LoopInputs, benchmark_model, build_unet, loop_inputs


def full_steps_of(setting: DeepCacheConfig, steps: int) -> tuple[int, ...]:
    """The setting's full steps; for an adaptive one those of uniform ``N = cache_interval``, the
    steps it runs when its threshold is never reached (how the benchmark times its decisions)."""
    return (
        DeepCacheConfig(cache_interval=setting.cache_interval).full_steps(steps)
        if setting.adaptive
        else setting.full_steps(steps)
    )


def denoise(unet, inputs: LoopInputs, steps: int, setting: DeepCacheConfig | None = None) -> tuple[torch.Tensor, int]:
    """A DDIM loop of ``steps`` U-Net calls: all full without ``setting``, else cached as it says (with its fixed
    forecast rule, if any).

    An adaptive setting runs the adaptive path (down path, decision, then the deep layers or not)
    and computes its signal at every step, with uniform ``N``'s full steps as the decisions: the
    time over uniform's is what deciding at run time costs. Returns the final sample and the bytes
    of the stored features (0 without caching; two features with a forecast).
    """
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    scheduler.set_timesteps(steps)
    full_steps = set(full_steps_of(setting, steps)) if setting is not None else None
    forecast = None if setting is None else setting.cache_forecast
    if isinstance(forecast, ForecastCalibration):
        raise ValueError("The benchmark loop times the fixed forecast rules; pass `cache_forecast='linear'`.")
    sample, history, cache_bytes, reference = inputs.noise, [], 0, None

    def refresh(branch_tensor: torch.Tensor) -> bool:
        nonlocal reference
        if reference is not None:
            relative_l1(branch_tensor, reference)
        if step in full_steps:
            reference = branch_tensor
        return step in full_steps

    with torch.no_grad():
        for step, timestep in enumerate(scheduler.timesteps):
            model_input = inputs.model_input(sample)
            if setting is None:
                output = unet(model_input, timestep, **inputs.kwargs, return_dict=False)[0]
            else:
                full = step in full_steps and not setting.adaptive
                cached = predict(forecast, history, step) if history and not full else None
                output, features = unet(
                    model_input,
                    timestep,
                    **inputs.kwargs,
                    return_dict=False,
                    cache_branch_id=setting.cache_branch_id,
                    replicate_prev_features=cached,
                    cache_refresh=refresh if setting.adaptive else None,
                )
                if cached is None or step in full_steps:  # a full step: its features join the history
                    history = [*history, (step, features)][-forecast_depth(forecast) :]
                cache_bytes = sum(f.numel() * f.element_size() for _, f in history)
            sample = scheduler.step(output, timestep, sample).prev_sample
    return sample, cache_bytes


def denoise_with_original(
    helper_module, unet, inputs: LoopInputs, steps: int, setting: DeepCacheConfig
) -> torch.Tensor:
    """The same loop under the original DeepCache 0.1.1 helper (uniform schedules only)."""
    plain = copy.copy(unet)  # shares every submodule; only its class differs
    plain.__class__ = type(unet)._deepcache_parent
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    scheduler.set_timesteps(steps)
    helper = helper_module.DeepCacheSDHelper(pipe=SimpleNamespace(unet=plain, scheduler=scheduler))
    helper.set_params(cache_interval=setting.cache_interval, cache_branch_id=setting.cache_branch_id)
    helper.enable()
    try:
        sample = inputs.noise
        with torch.no_grad():
            for timestep in scheduler.timesteps:
                output = plain(inputs.model_input(sample), timestep, **inputs.kwargs, return_dict=False)[0]
                sample = scheduler.step(output, timestep, sample).prev_sample
    finally:
        helper.disable()  # its block patches sit on modules shared with `unet`
    return sample


def machine(device: str, threads: int) -> str:
    """The device the timings ran on, for their tables: GPU name, torch and CUDA; or the CPU model and threads."""
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {threads} thread(s), torch {torch.__version__}"


class _Timer:
    """Wall time of a callable: CUDA events on a GPU, ``perf_counter`` on CPU; and peak GPU memory."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, function):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            result = function()
            end.record()
            torch.cuda.synchronize()
            return result, start.elapsed_time(end) / 1000, torch.cuda.max_memory_allocated()
        start = time.perf_counter()
        result = function()
        return result, time.perf_counter() - start, None


@dataclass
class Row:
    """One benchmarked setting; times are medians over the repeats."""

    model: str
    resolution: str
    batch: int
    steps: int
    interval: int
    branch: int
    schedule: str
    full_gflops: float
    cached_gflops: float
    ideal_speedup: float
    baseline_s: float
    deepcache_s: float
    speedup: float
    measured_over_ideal: float
    baseline_peak_mb: float | None
    deepcache_peak_mb: float | None
    cache_mb: float
    original_s: float | None = None
    ours_over_original_speed: float | None = None
    max_diff_vs_original: float | None = None
    times: dict = field(default_factory=dict)


SCHEDULES = ("uniform", "non-uniform", "adaptive")


def settings_grid(intervals, branches, schedules, forecasts=(None,)) -> list[DeepCacheConfig]:
    for schedule in schedules:
        if schedule not in SCHEDULES:
            raise ValueError(f"`schedules` must contain only {', '.join(map(repr, SCHEDULES))}, but got {schedule!r}.")
    return [
        DeepCacheConfig(
            cache_interval=interval,
            cache_branch_id=branch,
            uniform=schedule != "non-uniform",
            cache_threshold=1e30 if schedule == "adaptive" else None,
            cache_forecast=forecast,
        )
        for interval in intervals
        for branch in branches
        for schedule in schedules
        for forecast in forecasts
    ]


def benchmark(
    name: str,
    settings: list[DeepCacheConfig],
    steps: int = 50,
    batch: int = 1,
    size: tuple[int, int] | None = None,
    frames: int | None = None,
    repeats: int = 3,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    original=None,
    progress: bool = True,
) -> list[Row]:
    """Benchmarks ``settings`` on model ``name`` against the all-full loop; see the module docstring.

    ``original``: the original helper's module (``deepcache.original.load_original_helper``), to
    run it on the same model, inputs and uniform settings in the same interleaved rounds.
    """
    if repeats < 1:
        raise ValueError(f"`repeats` must be at least 1, but got {repeats}.")
    spec = benchmark_model(name)
    size = tuple(size) if size else spec.size
    unet = build_unet(name, device, dtype)
    inputs = loop_inputs(name, unet, batch, size, frames)
    flops = branch_flops(name, {s.cache_branch_id for s in settings}, batch, size, frames)
    timer = _Timer(unet.device)
    with_original = [
        s
        for s in settings
        if original is not None and s.uniform and not s.adaptive and s.cache_forecast in (None, "reuse")
    ]

    def run_original(setting):
        return denoise_with_original(original, unet, inputs, steps, setting)

    # Warm-up: allocator, kernels and the per-branch views are built outside the timed runs.
    denoise(unet, inputs, min(steps, 3))
    for setting in settings:
        denoise(unet, inputs, min(steps, 3), setting)
    times = {
        "baseline": [],
        **{i: [] for i in range(len(settings))},
        **{("original", i): [] for i in range(len(settings))},
    }
    peaks, samples, cache_bytes = {}, {}, {}
    total = repeats * (1 + len(settings) + len(with_original))
    with tqdm(total=total, desc=f"benchmark {name}", disable=not progress) as bar:
        for _ in range(repeats):
            (samples["baseline"], _), seconds, peaks["baseline"] = timer(lambda: denoise(unet, inputs, steps))
            times["baseline"].append(seconds)
            bar.update()
            for index, setting in enumerate(settings):
                (samples[index], cache_bytes[index]), seconds, peaks[index] = timer(
                    lambda setting=setting: denoise(unet, inputs, steps, setting)
                )
                times[index].append(seconds)
                bar.update()
                if setting in with_original:
                    samples[("original", index)], seconds, _ = timer(lambda setting=setting: run_original(setting))
                    times[("original", index)].append(seconds)
                    bar.update()

    baseline = statistics.median(times["baseline"])
    rows = []
    for index, setting in enumerate(settings):
        full, cached = flops[setting.cache_branch_id]
        ideal = ideal_speedup(full, cached, steps, len(full_steps_of(setting, steps)))
        seconds = statistics.median(times[index])
        row = Row(
            model=name,
            resolution=spec.pixels(size)
            + (f", {frames or spec.frames} frames" if spec.family in ("svd", "motion") else ""),
            batch=batch,
            steps=steps,
            interval=setting.cache_interval,
            branch=setting.cache_branch_id,
            schedule=("adaptive" if setting.adaptive else "uniform" if setting.uniform else "non-uniform")
            + ("" if setting.cache_forecast in (None, "reuse") else f", {setting.cache_forecast}"),
            full_gflops=full / 1e9,
            cached_gflops=cached / 1e9,
            ideal_speedup=ideal,
            baseline_s=baseline,
            deepcache_s=seconds,
            speedup=baseline / seconds,
            measured_over_ideal=baseline / seconds / ideal,
            baseline_peak_mb=_mb(peaks["baseline"]),
            deepcache_peak_mb=_mb(peaks[index]),
            cache_mb=cache_bytes[index] / 2**20,
            times={"baseline": times["baseline"], "deepcache": times[index]},
        )
        if setting in with_original:
            row.original_s = statistics.median(times[("original", index)])
            row.ours_over_original_speed = row.original_s / seconds
            row.max_diff_vs_original = (samples[index] - samples[("original", index)]).abs().max().item()
            row.times["original"] = times[("original", index)]
        rows.append(row)
    return rows


def _mb(value: int | None) -> float | None:
    return None if value is None else value / 2**20


def branch_flops(
    name: str, branches, batch: int = 1, size: tuple[int, int] | None = None, frames: int | None = None
) -> dict[int, tuple[int, int]]:
    """Full and cached FLOPs of one step per branch, counted on the meta device (no weights, attention included)."""
    unet = build_unet(name, "meta")
    inputs = loop_inputs(name, unet, batch, size, frames)
    args = (inputs.model_input(inputs.noise), torch.tensor(500, device="meta"))
    return {branch: step_flops(unet, args, inputs.kwargs, branch) for branch in sorted(branches)}


COLUMNS = (
    ("model", "model", "{}"),
    ("resolution", "res", "{}"),
    ("batch", "batch", "{}"),
    ("steps", "steps", "{}"),
    ("interval", "N", "{}"),
    ("branch", "branch", "{}"),
    ("schedule", "schedule", "{}"),
    ("full_gflops", "full GFLOPs", "{:.2f}"),
    ("cached_gflops", "cached GFLOPs", "{:.2f}"),
    ("ideal_speedup", "FLOP-ideal", "{:.2f}x"),
    ("baseline_s", "baseline s", "{:.3f}"),
    ("deepcache_s", "DeepCache s", "{:.3f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("measured_over_ideal", "measured/ideal", "{:.2f}"),
    ("baseline_peak_mb", "peak MB base", "{:.0f}"),
    ("deepcache_peak_mb", "peak MB cached", "{:.0f}"),
    ("cache_mb", "cache MB", "{:.2f}"),
    ("original_s", "original s", "{:.3f}"),
    ("ours_over_original_speed", "ours vs original", "{:.2f}x"),
    ("max_diff_vs_original", "max diff vs original", "{:.1e}"),
)


def markdown_table(rows: list[Row]) -> str:
    """Rows as a markdown table; "n/a" where a value was not measured (CPU peak memory, no original)."""
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [("n/a" if getattr(row, key) is None else form.format(getattr(row, key))) for key, _, form in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
