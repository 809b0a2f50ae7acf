"""Train the embedded models: the digits DDPM that ``python -m deepcache`` samples, and its classifier.

Data: scikit-learn's handwritten digits (1,797 8x8 images shipped inside scikit-learn, no download),
upsampled to 32x32 by ``deepcache.embedded.load_digits``. The DDPM's U-Net is
``deepcache.embedded.UNET_CONFIG``; the seed and every setting are written to ``training.json``
next to the weights, so a run can be repeated exactly.

    python scripts/train_embedded.py classifier            # about a minute on a CPU
    python scripts/train_embedded.py ddpm --steps 4000      # about an hour on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from deepcache.embedded import CLASSIFIER_DIR, MODEL_DIR, UNET_CONFIG, DigitClassifier, load_digits


def train_classifier(args) -> None:
    images, labels = load_digits()
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(images), generator=generator)
    held_out = order[: len(order) // 5]
    train = order[len(order) // 5 :]
    torch.manual_seed(args.seed)
    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    for _ in tqdm(range(args.epochs), desc="classifier epochs"):
        model.train()
        for batch in train[torch.randperm(len(train), generator=generator)].split(64):
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images[held_out]).argmax(1) == labels[held_out]).float().mean().item()
        model.feature_scale = model.config["feature_scale"] = 1.0 / model.body(images).std(dim=0).mean().item()
    print(f"held-out accuracy {accuracy:.3f} on {len(held_out)} digits")
    output = Path(args.output or CLASSIFIER_DIR)
    model.save(output)
    _write_record(output, dict(seed=args.seed, epochs=args.epochs, batch_size=64, lr=2e-3, held_out_accuracy=round(accuracy, 4)))


def train_ddpm(args) -> None:
    images, _ = load_digits()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    unet = UNet2DModel(**UNET_CONFIG)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    ema = EMAModel(unet.parameters(), decay=args.ema_decay, use_ema_warmup=True, power=2 / 3)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)

    def learning_rate(step: int) -> float:  # linear warm-up, then cosine decay to 10 %
        if step < args.warmup_steps:
            return (step + 1) / args.warmup_steps
        progress = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate)
    output = Path(args.output or MODEL_DIR)
    start, losses = time.perf_counter(), []
    batches = iter(())
    for step in tqdm(range(args.steps), desc="ddpm steps", mininterval=30):
        batch = next(batches, None)
        if batch is None:
            batches = iter(torch.randperm(len(images), generator=generator).split(args.batch_size))
            batch = next(batches)
        clean = images[batch]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),), generator=generator)
        prediction = unet(scheduler.add_noise(clean, noise, timesteps), timesteps).sample
        loss = F.mse_loss(prediction, noise)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        ema.step(unet.parameters())
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: loss {sum(losses[-100:]) / 100:.4f}, {time.perf_counter() - start:.0f} s", flush=True)
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            _save_ema_pipeline(unet, ema, scheduler, output)
            record = dict(
                seed=args.seed, steps=step + 1, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                lr_schedule="linear warm-up, cosine to 10 %", ema_decay=args.ema_decay, ema="warm-up, power 2/3",
                grad_clip=1.0, loss="MSE on noise", dataset="sklearn digits, 1797 images, bilinear 8->32, [-1, 1]",
                unet=UNET_CONFIG, final_loss_last_100=round(sum(losses[-100:]) / len(losses[-100:]), 5),
                train_seconds=round(time.perf_counter() - start), threads=torch.get_num_threads(),
            )
            _write_record(output, record)


def _save_ema_pipeline(unet, ema, scheduler, output: Path) -> None:
    """Save the EMA weights, not the raw ones: they sample cleaner."""
    averaged = UNet2DModel(**UNET_CONFIG)
    ema.copy_to(averaged.parameters())
    DDPMPipeline(unet=averaged.eval(), scheduler=scheduler).save_pretrained(output, safe_serialization=True)


def _write_record(directory: Path, record: dict) -> None:
    record.update(torch=torch.__version__, python=platform.python_version(), machine=platform.machine())
    (directory / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["ddpm", "classifier"])
    parser.add_argument("--output", help="output folder (default: the package's embedded-model folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4000, help="DDPM optimizer steps (default 4000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=8e-4)
    parser.add_argument("--warmup-steps", type=int, default=250)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=30, help="classifier epochs (default 30)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    (train_ddpm if args.model == "ddpm" else train_classifier)(args)


if __name__ == "__main__":
    main()
