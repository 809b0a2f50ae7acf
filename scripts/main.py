"""Plug-and-play DeepCache on a plain diffusers pipeline: baseline, then the same pipeline with DeepCacheSDHelper.

python scripts/main.py --model_type sdxl                      # interval 3, branch 0 (the helper demos' setting)
python scripts/main.py --model_type sd-inpaint --model DIR    # any hub id or local directory of that kind
"""

import argparse

import diffusers  # pipelines by name, loaded after deepcache.evaluation quiets transformers' torchvision notice
import torch
from diffusers import DDIMScheduler

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import DeepCacheSDHelper
from deepcache.evaluation.examples import (
    MODEL_HELP,
    compare,
    demo_image,
    demo_mask,
    describe,
    load,
    model_size,
)

# model type: (diffusers pipeline's name, default weights, inputs, default steps, (interval, branch))
MODEL_TYPES = {
    "sd1.5": ("StableDiffusionPipeline", "stable-diffusion-v1-5/stable-diffusion-v1-5", "text", 50, (3, 0)),
    "sd2.1": ("StableDiffusionPipeline", "stabilityai/stable-diffusion-2-1", "text", 50, (3, 0)),
    "sdxl": ("StableDiffusionXLPipeline", "stabilityai/stable-diffusion-xl-base-1.0", "text", 50, (3, 0)),
    "svd": ("StableVideoDiffusionPipeline", "stabilityai/stable-video-diffusion-img2vid-xt", "video", 25, (3, 0)),
    "sd-inpaint": (
        "StableDiffusionInpaintPipeline",
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
        "inpaint",
        50,
        (3, 0),
    ),
    "sdxl-inpaint": (
        "StableDiffusionXLInpaintPipeline",
        "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
        "inpaint",
        50,
        (3, 0),
    ),
    "sd-img2img": (
        "StableDiffusionImg2ImgPipeline",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "img2img",
        50,
        (3, 0),
    ),
    "ddpm": ("DDPMPipeline", "google/ddpm-cifar10-32", "unconditional", 100, (5, 2)),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_type", choices=list(MODEL_TYPES), default="sd1.5")
    parser.add_argument("--model", help=f"{MODEL_HELP} (default: the model type's usual checkpoint)")
    parser.add_argument("--prompt", default="a photo of an astronaut riding a horse on mars")
    parser.add_argument("--steps", type=int, help="denoising steps (default: 50; SVD 25; DDPM 100 DDIM steps)")
    parser.add_argument("--cache_interval", type=int, help="DeepCache interval (default 3; DDPM 5)")
    parser.add_argument("--cache_branch_id", type=int, help="cached branch (default 0; DDPM 2)")
    parser.add_argument("--height", type=int, help="image height (default: the model's)")
    parser.add_argument("--width", type=int, help="image width (default: the model's)")
    parser.add_argument("--num_frames", type=int, help="SVD frames (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup_steps", type=int, default=2, help="untimed warm-up run of each (0: none; default 2)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs of each, interleaved; the median is reported (default 2)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", help="where to save the comparison (default: <model_type>.png, .gif for SVD)")
    args = parser.parse_args(argv)

    pipeline_class, default_model, inputs, default_steps, (interval, branch) = MODEL_TYPES[args.model_type]
    pipe = load(getattr(diffusers, pipeline_class), args.model or default_model, args.device)
    if inputs == "unconditional":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    call_arguments = _inputs(pipe, inputs, args)

    helper = DeepCacheSDHelper(pipe)
    helper.set_params(
        cache_interval=args.cache_interval or interval,
        cache_branch_id=args.cache_branch_id if args.cache_branch_id is not None else branch,
    )
    print(f"DeepCacheSDHelper: {describe(helper.config.as_kwargs())}")

    def generate(steps):
        output = pipe(
            **call_arguments, num_inference_steps=steps, generator=torch.Generator(args.device).manual_seed(args.seed)
        )
        return output.frames if inputs == "video" else output.images

    def generate_with_helper(steps):
        with helper:
            return generate(steps)

    output = args.output or f"{args.model_type}.{'gif' if inputs == 'video' else 'png'}"
    compare(
        generate,
        generate_with_helper,
        args.steps or default_steps,
        args.warmup_steps,
        output,
        video=inputs == "video",
        repeats=args.repeats,
    )


def _inputs(pipe, inputs: str, args) -> dict:
    """The call's arguments besides steps and seed: prompt, and a synthetic picture and mask where needed."""
    if inputs == "unconditional":
        return {"batch_size": 16}
    if inputs == "video":
        height, width = model_size(pipe, video=True, height=args.height, width=args.width)
        return {
            "image": demo_image(width, height),
            "height": height,
            "width": width,
            "num_frames": args.num_frames,
            "decode_chunk_size": 8,
        }
    height, width = model_size(pipe, height=args.height, width=args.width)
    arguments = {"prompt": args.prompt, "height": height, "width": width}
    if inputs == "img2img":
        return {"prompt": args.prompt, "image": demo_image(width, height)}
    if inputs == "inpaint":
        arguments.update(image=demo_image(width, height), mask_image=demo_mask(width, height))
    return arguments


if __name__ == "__main__":
    main()
