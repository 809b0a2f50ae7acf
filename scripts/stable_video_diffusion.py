"""Stable Video Diffusion image-to-video: baseline, then DeepCache (interval 3, branch 1, uniform).

    python scripts/stable_video_diffusion.py --image photo.png    # saves a GIF: baseline above, DeepCache below
"""

import torch
from PIL import Image

from deepcache import DeepCacheStableVideoDiffusionPipeline
from deepcache.evaluation.examples import caching_setting, compare, demo_image, describe, load, script_arguments


def main(argv=None):
    parser = script_arguments(__doc__.splitlines()[0], "stabilityai/stable-video-diffusion-img2vid-xt", 25, "stable_video_diffusion.gif")
    parser.add_argument("--image", help="conditioning image (default: a synthetic landscape)")
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--num-frames", type=int, help="frames to generate (default: the model's)")
    parser.add_argument("--decode-chunk-size", type=int, default=8)
    args = parser.parse_args(argv)

    pipe = load(DeepCacheStableVideoDiffusionPipeline, args.model, args.device)
    image = Image.open(args.image).convert("RGB") if args.image else demo_image(args.width, args.height)
    image = image.resize((args.width, args.height))
    setting = caching_setting(pipe.deepcache_defaults, args)
    print(f"DeepCache: {describe(setting)}")

    def generate(steps, **caching):
        generator = torch.Generator(args.device).manual_seed(args.seed)
        return pipe(
            image,
            height=args.height,
            width=args.width,
            num_frames=args.num_frames,
            decode_chunk_size=args.decode_chunk_size,
            num_inference_steps=steps,
            generator=generator,
            **caching,
        ).frames

    compare(generate, lambda steps: generate(steps, **setting), args.steps, args.warmup_steps, args.output, video=True)


if __name__ == "__main__":
    main()
