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

from ..embedded import UNET_CONFIG as EMBEDDED_UNET
from ..embedded import embedded_model_path
from ..embedded.text_to_image import MAX_TOKENS as EMOJI_TOKENS
from ..embedded.text_to_image import UNET_CONFIG as EMOJI_UNET
from ..embedded.text_to_image import embedded_text_to_image_path
from ..measurement import count_flops, ideal_speedup, step_flops
from ..models import (
    DeepCacheControlNetModel,
    DeepCacheUNet2DConditionModel,
    DeepCacheUNet2DModel,
    DeepCacheUNetMotionModel,
    DeepCacheUNetSpatioTemporalConditionModel,
)
from ..pipelines import (
    DeepCacheDDIMPipeline,
    DeepCacheStableDiffusionControlNetPipeline,
    DeepCacheStableDiffusionPipeline,
)
from ..runtime import DeepCacheConfig, relative_l1
from ..schedules import ForecastCalibration, extrapolate, forecast_depth, predict
from ..testing import DDPM_UNET, MOTION_UNET, SD15_UNET
from .examples import interleaved

# The real architectures' U-Net configs (random weights: speed and FLOPs do not depend on them).
SD15_CONFIG = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768,
    attention_head_dim=8,
)

SDXL_CONFIG = dict(
    sample_size=128,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)


# LDM-4-G (CompVis cin256-v2), as deepcache.convert_ldm_class_conditional configures it: one class token, one head.
LDM4G_CONFIG = dict(
    sample_size=64,
    in_channels=3,
    out_channels=3,
    block_out_channels=(192, 384, 576, 960),
    layers_per_block=2,
    down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
    up_block_types=("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
    cross_attention_dim=512,
    attention_head_dim=1,
)

# AnimateDiff: SD 1.5's U-Net with the v1-5-2 motion adapter's modules (a temporal transformer after every layer and
# in the mid block, 8 heads, up to 32 frames), as UNetMotionModel.from_unet2d builds it.
ANIMATEDIFF_CONFIG = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlockMotion",) * 3 + ("DownBlockMotion",),
    up_block_types=("UpBlockMotion",) + ("CrossAttnUpBlockMotion",) * 3,
    cross_attention_dim=768,
    num_attention_heads=8,
    motion_num_attention_heads=8,
    motion_max_seq_length=32,
    use_motion_mid_block=True,
)

# Stable Video Diffusion (img2vid-xt) is diffusers' default UNetSpatioTemporalConditionModel config.
SVD_CONFIG: dict = {}


@dataclass(frozen=True)
class BenchmarkModel:
    """A U-Net architecture to benchmark and how to feed it: ``family`` picks the conditioning."""

    unet_class: type
    config: dict
    family: str  # "pixel", "sd", "sdxl", "svd" or "motion"
    size: tuple[int, int]  # sample height and width (latent size for latent models)
    description: str
    frames: int = 14
    vae_scale: int = 8  # pixels per latent pixel (1 for pixel-space models)
    tokens: int = 77  # text tokens the U-Net attends to

    def pixels(self, size: tuple[int, int]) -> str:
        return f"{size[0] * self.vae_scale}x{size[1] * self.vae_scale}"


MODELS = {
    "embedded": BenchmarkModel(
        DeepCacheUNet2DModel, EMBEDDED_UNET, "pixel", (32, 32), "embedded digits DDPM (trained weights)", vae_scale=1
    ),
    "emoji": BenchmarkModel(
        DeepCacheUNet2DConditionModel,
        EMOJI_UNET,
        "sd",
        (16, 16),
        "embedded emoji text-to-image (trained weights)",
        vae_scale=2,
        tokens=EMOJI_TOKENS,
    ),
    "sd1.5": BenchmarkModel(
        DeepCacheUNet2DConditionModel, SD15_CONFIG, "sd", (64, 64), "SD 1.5 U-Net (random weights)"
    ),
    "sdxl": BenchmarkModel(
        DeepCacheUNet2DConditionModel, SDXL_CONFIG, "sdxl", (128, 128), "SDXL U-Net (random weights)"
    ),
    "svd": BenchmarkModel(
        DeepCacheUNetSpatioTemporalConditionModel, SVD_CONFIG, "svd", (72, 128), "SVD-XT U-Net (random weights)"
    ),
    "animatediff": BenchmarkModel(
        DeepCacheUNetMotionModel,
        ANIMATEDIFF_CONFIG,
        "motion",
        (64, 64),
        "AnimateDiff U-Net (SD 1.5 + v1-5-2 motion modules, random weights)",
        frames=16,
    ),
    "ldm4": BenchmarkModel(
        DeepCacheUNet2DConditionModel,
        LDM4G_CONFIG,
        "sd",
        (64, 64),
        "LDM-4-G U-Net (cin256-v2, random weights)",
        vae_scale=4,
        tokens=1,
    ),
    "tiny-sd": BenchmarkModel(DeepCacheUNet2DConditionModel, SD15_UNET, "sd", (16, 16), "tiny SD-shaped U-Net (tests)"),
    "tiny-motion": BenchmarkModel(
        DeepCacheUNetMotionModel, MOTION_UNET, "motion", (16, 16), "tiny AnimateDiff-shaped U-Net (tests)", frames=4
    ),
    "tiny-ddpm": BenchmarkModel(
        DeepCacheUNet2DModel, DDPM_UNET, "pixel", (16, 16), "tiny DDPM U-Net (tests)", vae_scale=1
    ),
}


def build_unet(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """The cache-aware U-Net of ``MODELS[name]``: trained weights for the embedded ones (except on meta), random
    otherwise."""
    spec = _model(name)
    trained = {"embedded": embedded_model_path, "emoji": embedded_text_to_image_path}
    if name in trained and str(device) != "meta":
        unet = spec.unet_class.from_pretrained(trained[name](), subfolder="unet")
    else:
        torch.manual_seed(seed)
        with torch.device(device):  # built where it runs: no copy of random weights across devices
            unet = spec.unet_class(**spec.config)
    unet = unet.to(device)
    return (unet if dtype == torch.float32 else unet.to(dtype)).eval()


def _model(name: str) -> BenchmarkModel:
    if name not in MODELS:
        raise ValueError(f"`model` must be one of {sorted(MODELS)}, but got {name!r}.")
    return MODELS[name]


@dataclass
class LoopInputs:
    """The noise a loop starts from, and everything else the U-Net takes besides sample and timestep."""

    noise: torch.Tensor
    kwargs: dict
    conditioning: torch.Tensor | None = None  # SVD: image latents concatenated to every sample

    def model_input(self, sample: torch.Tensor) -> torch.Tensor:
        return sample if self.conditioning is None else torch.cat([sample, self.conditioning], dim=2)


def loop_inputs(
    name: str, unet, batch: int, size: tuple[int, int] | None = None, frames: int | None = None, seed: int = 0
) -> LoopInputs:
    """Inputs for ``batch`` samples; conditional models get the doubled batch of classifier-free guidance."""
    spec = _model(name)
    height, width = size or spec.size
    config = unet.config
    device, dtype = unet.device, unet.dtype
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    if spec.family == "pixel":
        return LoopInputs(randn(batch, config.in_channels, height, width), {})
    rows = 2 * batch
    if spec.family == "svd":
        frames = frames or spec.frames
        latent = config.out_channels
        kwargs = {"encoder_hidden_states": randn(rows, 1, config.cross_attention_dim), "added_time_ids": randn(rows, 3)}
        return LoopInputs(
            randn(rows, frames, latent, height, width),
            kwargs,
            randn(rows, frames, config.in_channels - latent, height, width),
        )
    if spec.family == "motion":  # (batch, channels, frames, height, width); the text repeated per frame
        frames = frames or spec.frames
        kwargs = {
            "encoder_hidden_states": randn(rows, spec.tokens, config.cross_attention_dim).repeat_interleave(frames, 0)
        }
        return LoopInputs(randn(rows, config.in_channels, frames, height, width), kwargs)
    kwargs = {"encoder_hidden_states": randn(rows, spec.tokens, config.cross_attention_dim)}
    if spec.family == "sdxl":
        kwargs["added_cond_kwargs"] = {"text_embeds": randn(rows, 1280), "time_ids": randn(rows, 6)}
    return LoopInputs(randn(rows, config.in_channels, height, width), kwargs)


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
                output, extras = unet(
                    model_input,
                    timestep,
                    **inputs.kwargs,
                    return_dict=False,
                    cache_branch_id=setting.cache_branch_id,
                    replicate_prev_features=cached,
                    cache_refresh=refresh if setting.adaptive else None,
                )
                features = extras["features"]
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
    spec = _model(name)
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


@dataclass(frozen=True)
class ControlNetStepFlops:
    """FLOPs of one guided step with a ControlNet: cached at ``branch`` with the ControlNet whole or cut, as shares of
    a full step."""

    branch: int
    unet_cached: int
    controlnet_whole: int
    controlnet_cut: int
    full: int  # U-Net and ControlNet of a full step

    @property
    def whole_share(self) -> float:
        return (self.unet_cached + self.controlnet_whole) / self.full

    @property
    def cut_share(self) -> float:
        return (self.unet_cached + self.controlnet_cut) / self.full


def controlnet_for(unet, vae_scale: int, **kwargs):
    """A ControlNet with ``unet``'s down path whose conditioning embedding matches the VAE's downscaling."""
    levels = 1 + max(vae_scale.bit_length() - 1, 0)  # one stride-2 convolution per halving
    return DeepCacheControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(16, 32, 96, 256)[:levels], **kwargs
    ).eval()


def controlnet_flops(
    name: str, branches, batch: int = 1, size: tuple[int, int] | None = None
) -> list[ControlNetStepFlops]:
    """Per branch, FLOPs of a cached step of ``MODELS[name]``'s U-Net (an SD-shaped one) with a ControlNet of
    its down path run whole and cut to the branch, against a full step; counted on the meta device."""
    spec = _model(name)
    if spec.family != "sd":
        raise ValueError(
            "The ControlNet benchmark takes an SD-shaped model "
            f"({sorted(n for n, m in MODELS.items() if m.family == 'sd')}), not {name!r}."
        )
    unet = build_unet(name, "meta")
    with torch.device("meta"):
        controlnet = controlnet_for(unet, spec.vae_scale, load_weights_from_unet=False)
    inputs = loop_inputs(name, unet, batch, size)
    sample, timestep, text = inputs.noise, torch.tensor(500), inputs.kwargs["encoder_hidden_states"]
    height, width = sample.shape[-2:]
    condition = torch.zeros(sample.shape[0], 3, height * spec.vae_scale, width * spec.vae_scale, device="meta")
    rows = []
    with torch.no_grad():
        whole = count_flops(controlnet, sample, timestep, text, condition, return_dict=False)
        down, mid = controlnet(sample, timestep, text, condition, return_dict=False)
        residuals = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        full = count_flops(unet, sample, timestep, text, **residuals) + whole
        for branch in branches:
            _, extras = unet(sample, timestep, text, **residuals, cache_branch_id=branch, return_dict=False)
            features = extras["features"]
            cached = count_flops(
                unet, sample, timestep, text, **residuals, cache_branch_id=branch, replicate_prev_features=features
            )
            cut = count_flops(controlnet, sample, timestep, text, condition, cache_branch_id=branch, return_dict=False)
            rows.append(ControlNetStepFlops(branch, cached, whole, cut, full))
    return rows


EMOJI_PROMPTS = ("red apple", "rocket", "dog face", "snowman")  # the whole-pipeline timings' prompts


def controlnet_pipeline_seconds(
    branch: int, interval: int = 3, steps: int = 50, repeats: int = 3, seed: int = 0
) -> dict[str, float]:
    """Median seconds of the embedded emoji pipeline with a ControlNet made from its U-Net (4 prompts, guidance 5),
    interleaved: uncached, DeepCache with the ControlNet run whole (the path before it could be cut), and cut.
    Also checks that whole and cut give the same images (``"identical"``: 1.0 or 0.0)."""
    base = DeepCacheStableDiffusionPipeline.from_pretrained(embedded_text_to_image_path())
    torch.manual_seed(seed)
    controlnet = controlnet_for(base.unet, MODELS["emoji"].vae_scale)
    pipe = DeepCacheStableDiffusionControlNetPipeline(
        **{k: v for k, v in base.components.items() if k != "image_encoder"}, controlnet=controlnet
    )
    pipe.set_progress_bar_config(disable=True)
    side = base.unet.config.sample_size * base.vae_scale_factor
    control = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(seed))

    def call(caching: dict):
        generator = torch.Generator().manual_seed(seed)
        prompts = list(EMOJI_PROMPTS)
        return pipe(
            prompts,
            image=control,
            num_inference_steps=steps,
            guidance_scale=5.0,
            generator=generator,
            output_type="np",
            **caching,
        ).images

    caching = dict(cache_interval=interval, cache_branch_id=branch)
    variants = {"uncached": {}, "ControlNet whole": {**caching, "cut_controlnet": False}, "ControlNet cut": caching}
    images, seconds = interleaved([(call, setting) for setting in variants.values()], repeats)
    result = dict(zip(variants, seconds))
    result["identical"] = float((images[1] == images[2]).all())
    return result


PIPELINE_MODELS = ("emoji", "embedded")  # the benchmark models that ship a whole pipeline


def pipeline_and_loop_seconds(
    name: str, settings: list[DeepCacheConfig], steps: int = 50, batch: int = 4, repeats: int = 3, seed: int = 0
) -> list[dict]:
    """What users run beside what caching changes: median seconds of the whole pipeline call and of the bare
    U-Net loop (:func:`denoise`), uncached and with each setting, all interleaved.

    The pipeline runs with DDIM (as the loop does), ``output_type="latent"`` and, for text-to-image, prompt
    embeddings computed once beforehand: its time over the loop's is what the pipeline adds per call (latents,
    guidance arithmetic, callbacks) and, cached, the hooks and runs on top. One row per setting (``None``: uncached).
    """
    if name not in PIPELINE_MODELS:
        raise ValueError(f"`model` must be one of {PIPELINE_MODELS} to time its whole pipeline, but got {name!r}.")
    if name == "emoji":
        pipe = DeepCacheStableDiffusionPipeline.from_pretrained(embedded_text_to_image_path())
        prompts = [EMOJI_PROMPTS[i % len(EMOJI_PROMPTS)] for i in range(batch)]
        embeds, negative = pipe.encode_prompt(prompts, pipe.device, 1, True)
        call = dict(prompt_embeds=embeds, negative_prompt_embeds=negative, guidance_scale=5.0)
    else:
        pipe = DeepCacheDDIMPipeline.from_pretrained(embedded_model_path())
        call = dict(batch_size=batch)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    inputs = loop_inputs(name, pipe.unet, batch, seed=seed)

    def run_pipeline(setting: DeepCacheConfig | None):
        generator = torch.Generator().manual_seed(seed)
        caching = {} if setting is None else setting.as_kwargs()
        return pipe(**call, num_inference_steps=steps, generator=generator, output_type="latent", **caching)

    def run_loop(setting: DeepCacheConfig | None):
        return denoise(pipe.unet, inputs, steps, setting)

    variants = [None, *settings]
    runs = [(run, setting) for setting in variants for run in (run_loop, run_pipeline)]
    _, seconds = interleaved(runs, repeats)
    rows = []
    for index, setting in enumerate(variants):
        loop, whole = seconds[2 * index], seconds[2 * index + 1]
        rows.append(
            {
                "setting": setting,
                "loop_s": loop,
                "pipeline_s": whole,
                "loop_speedup": seconds[0] / loop,
                "pipeline_speedup": seconds[1] / whole,
                "overhead_ms_per_step": 1000 * (whole - loop) / steps,
            }
        )
    return rows


def compile_seconds(
    name: str,
    setting: DeepCacheConfig,
    steps: int = 50,
    batch: int = 4,
    repeats: int = 3,
    mode: str = "default",
    backend: str = "inductor",
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> dict[str, float]:
    """Does caching stack with ``torch.compile``? Median seconds of ``MODELS[name]``'s U-Net loop, eager and compiled
    (``dynamic=False``), uncached and cached with ``setting``, interleaved after one warm-up of each
    (which compiles)."""
    unet = build_unet(name, device, dtype)
    inputs = loop_inputs(name, unet, batch)
    compiled = torch.compile(unet, backend=backend, dynamic=False, **({"mode": mode} if backend == "inductor" else {}))
    variants = {
        "eager uncached": (unet, None),
        "eager cached": (unet, setting),
        "compiled uncached": (compiled, None),
        "compiled cached": (compiled, setting),
    }
    with torch.no_grad():
        start = time.perf_counter()
        denoise(compiled, inputs, 4), denoise(compiled, inputs, 4, setting)
        warm_up = time.perf_counter() - start
        _, seconds = interleaved(
            [(denoise, model, inputs, steps, caching) for model, caching in variants.values()], repeats
        )
    return {**dict(zip(variants, seconds)), "compile and warm-up": warm_up}


def forecast_cost(
    name: str, branches, batch: int = 1, repeats: int = 20, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> list[dict]:
    """What a forecast adds to a cached step: median seconds of one cached U-Net step and of the ``"linear"`` rule's
    arithmetic on that branch's features (``last + a (last - earlier)``), interleaved, per branch."""
    unet = build_unet(name, device, dtype)
    inputs = loop_inputs(name, unet, batch)
    model_input, timestep = inputs.model_input(inputs.noise), torch.tensor(500, device=unet.device)
    rows = []
    with torch.no_grad():
        for branch in sorted(branches):
            _, extras = unet(model_input, timestep, **inputs.kwargs, cache_branch_id=branch, return_dict=False)
            last = extras["features"]
            earlier = last * 0.9

            def cached_step(last=last, branch=branch):
                return unet(
                    model_input,
                    timestep,
                    **inputs.kwargs,
                    cache_branch_id=branch,
                    replicate_prev_features=last,
                    return_dict=False,
                )

            def forecast(last=last, earlier=earlier):
                return extrapolate(last, earlier, 0.5)

            cached_step(), forecast()  # warm-up
            _, (step_s, forecast_s) = interleaved([(cached_step,), (forecast,)], repeats)
            rows.append(
                {
                    "branch": branch,
                    "feature_shape": list(last.shape),
                    "feature_mb": last.numel() * last.element_size() / 2**20,
                    "cached_step_ms": 1000 * step_s,
                    "forecast_ms": 1000 * forecast_s,
                    "share": forecast_s / step_s,
                }
            )
    return rows


# Real-size text encoders and autoencoder of the pipelines the GPU check calls whole (random weights).
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
OPEN_CLIP_BIG_G = dict(
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, projection_dim=1280
)
SD_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
)


def random_pipeline(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """The whole DeepCache pipeline of the real ``"sd1.5"`` or ``"sdxl"`` architecture with random weights, built on
    ``device`` without any download (a byte-level tokenizer; text encoders, VAE and U-Net at their real sizes); or a
    ``"tiny-sd"`` one, for dry runs."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from ..pipelines import DeepCacheStableDiffusionXLPipeline
    from ..testing import tiny_clip_tokenizer, tiny_pipeline

    if name == "tiny-sd":
        return tiny_pipeline("sd", cls=DeepCacheStableDiffusionPipeline).to(device, dtype)
    if name not in ("sd1.5", "sdxl"):
        raise ValueError(f"`name` must be 'sd1.5', 'sdxl' or 'tiny-sd', but got {name!r}.")
    tokenizer = tiny_clip_tokenizer()

    def text_encoder(cls, **sizes):
        config = CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=77, **sizes)
        return cls(config)

    scheduler = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    with torch.device(device):
        unet = build_unet(name, device, dtype)
        vae = AutoencoderKL(**SD_VAE, sample_size=512 if name == "sd1.5" else 1024)
        if name == "sd1.5":
            pipe = DeepCacheStableDiffusionPipeline(
                vae=vae,
                text_encoder=text_encoder(CLIPTextModel, **CLIP_L),
                tokenizer=tokenizer,
                unet=unet,
                scheduler=DDIMScheduler(**scheduler, clip_sample=False, set_alpha_to_one=False),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        else:
            pipe = DeepCacheStableDiffusionXLPipeline(
                vae=vae,
                text_encoder=text_encoder(CLIPTextModel, **CLIP_L),
                text_encoder_2=text_encoder(CLIPTextModelWithProjection, **OPEN_CLIP_BIG_G),
                tokenizer=tokenizer,
                tokenizer_2=tokenizer,
                unet=unet,
                scheduler=EulerDiscreteScheduler(**scheduler, timestep_spacing="leading"),
                add_watermarker=False,
            )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)
