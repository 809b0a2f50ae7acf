"""Stable Diffusion XL text-to-image, optionally with the refiner: baseline, then DeepCache.

python scripts/stable_diffusion_xl.py              # base: interval 3, branch 1, uniform
python scripts/stable_diffusion_xl.py --refine     # base to denoising_end, refiner from there, both cached
"""

from pathlib import Path

import torch

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import (
    DeepCacheStableDiffusionXLImg2ImgPipeline,
    DeepCacheStableDiffusionXLPipeline,
)
from deepcache.evaluation.examples import (
    MODEL_HELP,
    caching_setting,
    compare_with_setting,
    describe,
    load,
    script_arguments,
)

REFINER = "stabilityai/stable-diffusion-xl-refiner-1.0"


def main(argv=None):
    parser = script_arguments(
        __doc__.splitlines()[0], "stabilityai/stable-diffusion-xl-base-1.0", 50, "stable_diffusion_xl.png"
    )
    parser.add_argument("--prompt", default="a photo of an astronaut riding a horse on mars")
    parser.add_argument("--refine", action="store_true", help="finish with the refiner (ensemble of experts)")
    parser.add_argument("--refiner-model", help=f"{MODEL_HELP} (default {REFINER}; required with a local --model)")
    parser.add_argument(
        "--high-noise-frac",
        type=float,
        default=0.8,
        help="share of the steps the base runs with --refine (default 0.8)",
    )
    args = parser.parse_args(argv)
    if args.refine and args.refiner_model is None:
        if Path(args.model).expanduser().exists():  # a local base should not silently reach for the hub's refiner
            parser.error(
                "--refine with a local --model needs --refiner-model (a local refiner folder, or the hub id "
                + REFINER
                + ")"
            )
        args.refiner_model = REFINER

    base = load(DeepCacheStableDiffusionXLPipeline, args.model, args.device)
    refiner = None
    if args.refine:
        refiner = load(
            DeepCacheStableDiffusionXLImg2ImgPipeline,
            args.refiner_model,
            args.device,
            text_encoder_2=base.text_encoder_2,
            vae=base.vae,
        )
    setting = caching_setting(base.deepcache_defaults, args)
    print(f"DeepCache: {describe(setting)}{' on base and refiner' if refiner else ''}")

    def generate(steps, **caching):
        generator = torch.Generator(args.device).manual_seed(args.seed)
        if refiner is None:
            return base(args.prompt, num_inference_steps=steps, generator=generator, **caching).images
        latents = base(
            args.prompt,
            num_inference_steps=steps,
            denoising_end=args.high_noise_frac,
            output_type="latent",
            generator=generator,
            **caching,
        ).images
        return refiner(
            args.prompt,
            image=latents,
            num_inference_steps=steps,
            denoising_start=args.high_noise_frac,
            generator=generator,
            **caching,
        ).images

    compare_with_setting(generate, setting, args)


if __name__ == "__main__":
    main()
