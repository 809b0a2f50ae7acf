"""What the benchmark times beside the U-Net loop: whole pipeline calls (text-to-image and ControlNet), ControlNet
FLOPs, torch.compile, and the forecast's cost per cached step."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

from ..embedded import embedded_model_path
from ..embedded.text_to_image import embedded_text_to_image_path
from ..measurement import count_flops
from ..models import DeepCacheControlNetModel
from ..pipelines import (
    DeepCacheDDIMPipeline,
    DeepCacheStableDiffusionControlNetPipeline,
    DeepCacheStableDiffusionPipeline,
)
from ..runtime import DeepCacheConfig, pipeline_unet_cache_aware
from ..schedules import extrapolate
from .benchmark import denoise
from .benchmark_models import MODELS, benchmark_model, build_unet, loop_inputs
from .examples import interleaved


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
    spec = benchmark_model(name)
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
            _, features = unet(sample, timestep, text, **residuals, cache_branch_id=branch, return_dict=False)
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

    def run_loop(setting: DeepCacheConfig | None):  # the pipeline's U-Net, cache-aware as in its calls
        with pipeline_unet_cache_aware(pipe):
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
            _, last = unet(model_input, timestep, **inputs.kwargs, cache_branch_id=branch, return_dict=False)
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
