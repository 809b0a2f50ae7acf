"""Unconditional DDPM (CIFAR-10 by default) with DDIM or DDPM sampling: baseline, then DeepCache.

python scripts/ddpm.py                      # 100 DDIM steps, interval 5, paper branch 3 (helper branch 2)
python scripts/ddpm.py --scheduler ddpm --steps 1000
"""

import torch
from diffusers import DDIMScheduler, DDPMScheduler

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import DeepCacheDDPMPipeline
from deepcache.evaluation.examples import (
    caching_setting,
    compare_with_setting,
    describe,
    load,
    script_arguments,
)

SCHEDULERS = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}


def main(argv=None):
    parser = script_arguments(__doc__.splitlines()[0], "google/ddpm-cifar10-32", 100, "ddpm.png")
    parser.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="ddim")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    pipe = load(DeepCacheDDPMPipeline, args.model, args.device)
    pipe.scheduler = SCHEDULERS[args.scheduler].from_config(pipe.scheduler.config)
    setting = caching_setting(pipe.deepcache_defaults, args)
    print(f"DeepCache: {describe(setting)}, {args.scheduler.upper()} sampling")

    def generate(steps, **caching):
        generator = torch.Generator(args.device).manual_seed(args.seed)
        return pipe(batch_size=args.batch_size, num_inference_steps=steps, generator=generator, **caching).images

    compare_with_setting(generate, setting, args)


if __name__ == "__main__":
    main()
