"""Class-conditional LDM-4-G (ImageNet 256, CompVis cin256-v2): baseline, then DeepCache (the paper's 4.1x row:
interval 5, branch 0, uniform, 250 DDIM steps).

    python scripts/convert_ldm_class_conditional.py --checkpoint cin256-v2/model.ckpt --output ldm-cin256-v2
    python scripts/ldm_class_conditional.py --model ldm-cin256-v2                                 # 250 DDIM steps,
    guidance 1.5
    python scripts/ldm_class_conditional.py --model ldm-cin256-v2 --cache-interval 10 --nonuniform   # the paper's
    (center, pow) for N = 10

--model is the folder the converter wrote (diffusers has no hub checkpoint of this model).
"""

from pathlib import Path

import torch

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache import (
    LDM4G_NONUNIFORM,
    DeepCacheConfig,
    DeepCacheLDMClassConditionalPipeline,
)
from deepcache.evaluation.examples import (
    caching_setting,
    compare,
    describe,
    load,
    script_arguments,
)


def main(argv=None):
    parser = script_arguments(__doc__.splitlines()[0], "ldm-cin256-v2", 250, "ldm_class_conditional.png")
    parser.add_argument(
        "--classes",
        type=int,
        nargs="+",
        default=[88, 207, 279, 980],
        help="ImageNet class indices, one image each (default: macaw, golden retriever, arctic fox, volcano)",
    )
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=1.5,
        help="classifier-free guidance against the null class (default 1.5, the paper's)",
    )
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0)")
    parser.add_argument(
        "--nonuniform",
        action="store_true",
        help=f"the paper's non-uniform schedule; its (center, pow) by interval: {LDM4G_NONUNIFORM}",
    )
    args = parser.parse_args(argv)
    if not Path(args.model).expanduser().is_dir():
        parser.error(
            f"--model {args.model!r} is not a folder; diffusers has no hub checkpoint of LDM-4-G: convert CompVis' "
            "first with "
            "python scripts/convert_ldm_class_conditional.py --checkpoint model.ckpt --output ldm-cin256-v2"
        )

    setting = caching_setting(DeepCacheLDMClassConditionalPipeline.deepcache_defaults, args)
    if args.nonuniform and setting["cache_interval"] not in LDM4G_NONUNIFORM:
        parser.error(
            f"--nonuniform: the paper gives (center, pow) for intervals {sorted(LDM4G_NONUNIFORM)}, not "
            f"{setting['cache_interval']}"
        )

    def cached_setting(steps: int) -> dict:
        if not args.nonuniform:
            return setting
        center, pow_ = LDM4G_NONUNIFORM[
            setting["cache_interval"]
        ]  # tuned at 250 steps: the centre scales with the steps
        return {**setting, "uniform": False, "center": min(steps - 1, round(center * steps / 250)), "pow": pow_}

    for steps in {args.steps, args.warmup_steps} - {
        0
    }:  # a schedule that does not fit fails here, not after the baseline ran
        try:
            DeepCacheConfig(**cached_setting(steps)).full_steps(steps)
        except ValueError as error:
            parser.error(f"at {steps} steps: {error} (the paper's (center, pow) are tuned for 250 steps)")
    pipe = load(DeepCacheLDMClassConditionalPipeline, args.model, args.device)

    print(f"DeepCache: {describe(cached_setting(args.steps))}; classes {args.classes}, guidance {args.guidance_scale}")

    def generate(steps, **caching):
        generator = torch.Generator(args.device).manual_seed(args.seed)
        return pipe(
            class_labels=args.classes,
            num_inference_steps=steps,
            guidance_scale=args.guidance_scale,
            eta=args.eta,
            generator=generator,
            **caching,
        ).images

    compare(
        generate,
        lambda steps: generate(steps, **cached_setting(steps)),
        args.steps,
        args.warmup_steps,
        args.output,
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
