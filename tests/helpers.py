"""Shared by the tests: the example and research scripts, loaded as modules, and a call per tiny pipeline."""

import importlib.util
import pathlib

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

import deepcache

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"


def script(name):
    """``scripts/<name>.py`` as a module, so a test can call its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STEPS = 7


def _image(size):
    return Image.fromarray((np.random.RandomState(0).rand(size, size, 3) * 255).astype(np.uint8))


def _mask(size):
    return Image.fromarray(np.pad(np.full((size // 2, size // 2), 255, np.uint8), size // 4))


# kind: (DeepCache class, call arguments, loop iterations those arguments run)
CASES = {
    "sd": (deepcache.DeepCacheStableDiffusionPipeline, dict(prompt="a red cube"), STEPS),
    "sd-img2img": (
        deepcache.DeepCacheStableDiffusionImg2ImgPipeline,
        dict(prompt="a red cube", image=_image(32), strength=0.6),
        4,
    ),
    "sd-inpaint": (
        deepcache.DeepCacheStableDiffusionInpaintPipeline,
        dict(prompt="a red cube", image=_image(32), mask_image=_mask(32), strength=0.75),
        5,
    ),
    "sdxl": (deepcache.DeepCacheStableDiffusionXLPipeline, dict(prompt="a red cube", height=32, width=32), STEPS),
    "sdxl-img2img": (
        deepcache.DeepCacheStableDiffusionXLImg2ImgPipeline,
        dict(prompt="a red cube", image=_image(32), strength=0.6),
        4,
    ),
    "sdxl-refiner": (
        deepcache.DeepCacheStableDiffusionXLImg2ImgPipeline,
        dict(prompt="a red cube", image=_image(32), denoising_start=0.5),
        4,
    ),
    "sdxl-inpaint": (
        deepcache.DeepCacheStableDiffusionXLInpaintPipeline,
        dict(prompt="a red cube", image=_image(32), mask_image=_mask(32), height=32, width=32, strength=0.75),
        5,
    ),
    "svd": (
        deepcache.DeepCacheStableVideoDiffusionPipeline,
        dict(image=_image(32), num_frames=2, height=32, width=32, decode_chunk_size=2),
        STEPS,
    ),
    "ddpm": (deepcache.DeepCacheDDPMPipeline, dict(batch_size=2), STEPS),
    "ddim": (deepcache.DeepCacheDDIMPipeline, dict(batch_size=2, eta=0.5), STEPS),
    "ldm": (deepcache.DeepCacheLDMPipeline, dict(batch_size=2), STEPS),
    "ldm-cin": (deepcache.DeepCacheLDMClassConditionalPipeline, dict(class_labels=[1, 2]), STEPS),
    "animatediff": (
        deepcache.DeepCacheAnimateDiffPipeline,
        dict(prompt="a red cube", num_frames=2, height=32, width=32),
        STEPS,
    ),
    "sd-adapter": (
        deepcache.DeepCacheStableDiffusionAdapterPipeline,
        dict(prompt="a red cube", image=_image(32)),
        STEPS,
    ),
}


def call(pipe, kind, **kwargs):
    """The pipeline's output for the kind's arguments, seed 0 and numpy images, overridden by ``kwargs``."""
    generator = torch.Generator().manual_seed(0)
    return pipe(
        **{**CASES[kind][1], "num_inference_steps": STEPS, "generator": generator, "output_type": "np", **kwargs}
    )


def first_output(output):
    """A pipeline output's images, or a video pipeline's frames."""
    return output[0]


def generate(pipe, kind, **kwargs):
    return np.asarray(first_output(call(pipe, kind, **kwargs)))


class TwoPassPipeline(DiffusionPipeline):
    """A user's own pipeline: two U-Net calls per step, the timestep passed by keyword."""

    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def __call__(self, num_inference_steps=7, callback_on_step_end=None):
        sample = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        self.scheduler.set_timesteps(num_inference_steps)
        for i, t in enumerate(self.scheduler.timesteps):
            first = self.unet(sample=sample, timestep=t).sample
            second = self.unet(sample=sample.flip(-1), timestep=t).sample.flip(-1)
            sample = self.scheduler.step((first + second) / 2, t, sample).prev_sample
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {})
        return sample


def compile_counting_graphs(module, **options):
    """``torch.compile(module, **options)`` with a backend that runs each graph eagerly; returns it and the list of
    graphs."""
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    return torch.compile(module, backend=counting_backend, **options), graphs


def ip_adapter_state_dict(unet) -> dict:
    """Random IP-Adapter weights in the original checkpoint's layout, for this U-Net's cross-attentions."""
    generator = torch.Generator().manual_seed(3)
    dim = unet.config.cross_attention_dim
    image_proj = {
        "proj.weight": torch.randn(4 * dim, dim, generator=generator) * 0.1,
        "proj.bias": torch.zeros(4 * dim),
        "norm.weight": torch.ones(dim),
        "norm.bias": torch.zeros(dim),
    }
    ip_adapter, key = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor") and "motion_modules" not in name:  # AnimateDiff's are temporal
            shape = unet.get_submodule(name.removesuffix(".processor")).to_k.weight.shape
            ip_adapter[f"{key}.to_k_ip.weight"] = torch.randn(shape, generator=generator) * 0.1
            ip_adapter[f"{key}.to_v_ip.weight"] = torch.randn(shape, generator=generator) * 0.1
            key += 2  # the original checkpoints number cross-attentions 1, 3, 5, ...
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}
