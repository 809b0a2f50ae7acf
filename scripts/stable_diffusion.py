"""Stable Diffusion 1.5 / 2.1 text-to-image: baseline, then DeepCache at the reference script's setting.

python scripts/stable_diffusion.py                  # SD 1.5: interval 5, branch 1, non-uniform schedule
python scripts/stable_diffusion.py --model sd2.1    # or any hub id / local directory
"""

import torch

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import DeepCacheStableDiffusionPipeline
from deepcache.evaluation.examples import (
    caching_setting,
    compare_with_setting,
    describe,
    load,
    script_arguments,
)

MODELS = {"sd1.5": "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd2.1": "stabilityai/stable-diffusion-2-1"}


def main(argv=None):
    parser = script_arguments(__doc__.splitlines()[0], "sd1.5", 50, "stable_diffusion.png")
    parser.add_argument("--prompt", default="a photo of an astronaut riding a horse on mars")
    args = parser.parse_args(argv)

    pipe = load(DeepCacheStableDiffusionPipeline, MODELS.get(args.model, args.model), args.device)
    setting = caching_setting(pipe.deepcache_defaults, args)
    print(f"DeepCache: {describe(setting)}")

    def generate(steps, **caching):
        generator = torch.Generator(args.device).manual_seed(args.seed)
        return pipe(args.prompt, num_inference_steps=steps, generator=generator, **caching).images

    compare_with_setting(generate, setting, args)


if __name__ == "__main__":
    main()
