"""Train the embedded models: the emoji text-to-image model, the digits DDPM, and their judges.

Digits: scikit-learn's handwritten digits (1,797 8x8 images shipped inside scikit-learn, no download),
upsampled to 32x32 by ``deepcache.embedded.load_digits``; the DDPM's U-Net is
``deepcache.embedded.UNET_CONFIG``. Emoji: ``deepcache.embedded.emoji.build_emoji_data`` (needs Debian's
fonts-noto-color-emoji and unicode-data); the model's configs are in ``deepcache.embedded.text_to_image``.
The seed and every setting are written to ``training.json`` next to the weights, so a run can be
repeated exactly.

    python scripts/train_embedded.py classifier                   # about a minute on a CPU
    python scripts/train_embedded.py ddpm --steps 4000             # about an hour on 2 CPU cores
    python scripts/train_embedded.py text-to-image --steps 5000    # about 1.5 hours on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import time
from pathlib import Path

import diffusers  # pipelines by attribute, loaded after the notice below is quieted
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    PNDMScheduler,
    UNet2DConditionModel,
    UNet2DModel,
)
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

import deepcache.evaluation  # noqa: F401  (quiets transformers' torchvision notice before pipelines load)
from deepcache.embedded import (
    CLASSIFIER_DIR,
    MODEL_DIR,
    UNET_CONFIG,
    DigitClassifier,
    load_digits,
)
from deepcache.embedded.emoji_judges import (
    JUDGES_DIR,
    EmojiClassifier,
    EmojiTextScorer,
    caption_words,
)
from deepcache.embedded.text_to_image import (
    IMAGE_SIZE,
    SCHEDULER_CONFIG,
    TEXT_ENCODER_CONFIG,
    VAE_CONFIG,
    build_clip_tokenizer,
)
from deepcache.embedded.text_to_image import MODEL_DIR as TEXT_TO_IMAGE_DIR
from deepcache.embedded.text_to_image import UNET_CONFIG as TEXT_TO_IMAGE_UNET_CONFIG


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
    _write_record(
        output, dict(seed=args.seed, epochs=args.epochs, batch_size=64, lr=2e-3, held_out_accuracy=round(accuracy, 4))
    )


def train_ddpm(args) -> None:
    images, _ = load_digits()
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    unet = UNet2DModel(**UNET_CONFIG)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    ema = EMAModel(unet.parameters(), decay=args.ema_decay, use_ema_warmup=True, power=2 / 3)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(args.steps, args.warmup_steps))
    output = Path(args.output or MODEL_DIR)
    start, losses = time.perf_counter(), []
    batches = _batches(len(images), args.batch_size, generator)
    for step in tqdm(range(args.steps), desc="ddpm steps", mininterval=30):
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
            print(
                f"step {step + 1}: loss {sum(losses[-100:]) / 100:.4f}, {time.perf_counter() - start:.0f} s", flush=True
            )
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            _save_ema_pipeline(unet, ema, scheduler, output)
            record = dict(
                seed=args.seed,
                steps=step + 1,
                batch_size=args.batch_size,
                lr=args.lr,
                warmup_steps=args.warmup_steps,
                lr_schedule="linear warm-up, cosine to 10 %",
                ema_decay=args.ema_decay,
                ema="warm-up, power 2/3",
                grad_clip=1.0,
                loss="MSE on noise",
                dataset="sklearn digits, 1797 images, bilinear 8->32, [-1, 1]",
                unet=UNET_CONFIG,
                final_loss_last_100=round(sum(losses[-100:]) / len(losses[-100:]), 5),
                train_seconds=round(time.perf_counter() - start),
                threads=torch.get_num_threads(),
            )
            _write_record(output, record)


def _batches(count: int, batch_size: int, generator: torch.Generator):
    """Shuffled index batches, epoch after epoch; each epoch's order is drawn when it starts."""
    while True:
        yield from torch.randperm(count, generator=generator).split(batch_size)


def _warmup_cosine(steps: int, warmup_steps: int):
    """Learning-rate factor: linear warm-up, then cosine decay to 10 %."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _emoji_training_data(args):
    """Rendered emoji as float images in [-1, 1], their captions, and the held-out mask."""
    from deepcache.embedded.emoji import build_emoji_data, save_catalog

    data = build_emoji_data(IMAGE_SIZE, seed=args.seed)
    if args.output is None:  # training the package's own models: ship the captions and split they saw
        save_catalog(data)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return data, images, torch.from_numpy(data.held_out)


# Per-sample weights of the noise-prediction MSE, from each sample's signal-to-noise ratio. "mse" is Stable
# Diffusion's loss. Min-SNR-5 (Hang et al. 2023) converges faster but, for noise prediction, weights a
# timestep by min(SNR, 5) / SNR: almost nothing at low noise (measured: not why PLMS and DPM-Solver++
# converged badly on the shipped weights; docs/solvers.md).
LOSS_WEIGHTS = {"mse": torch.ones_like, "min-snr-5": lambda snr: snr.clamp(max=5.0) / snr}
LOSS_NAMES = {"mse": "MSE on noise (Stable Diffusion's)", "min-snr-5": "MSE on noise, min-SNR-5 weighted"}


def _fresh_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **TEXT_ENCODER_CONFIG,
        )
    )


def train_text_to_image(args) -> None:
    """Autoencoder first, then the U-Net and the text encoder together on its latents."""
    data, images, held_out = _emoji_training_data(args)
    train = (~held_out).nonzero().squeeze(1)
    output = Path(args.output or TEXT_TO_IMAGE_DIR)
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    earlier = None
    if args.continue_from:  # more steps on a saved model: its tokenizer and autoencoder stay as they are
        source = diffusers.StableDiffusionPipeline.from_pretrained(args.continue_from)
        earlier = json.loads((Path(args.continue_from) / "training.json").read_text())
        tokenizer, vae, text_encoder, unet = (
            source.tokenizer,
            source.vae,
            source.text_encoder.train(),
            source.unet.train(),
        )
        shutil.copytree(
            Path(args.continue_from) / "tokenizer", output / "tokenizer", dirs_exist_ok=True
        )  # the files as built
        vae_record, scaling_factor = earlier["autoencoder"], vae.config.scaling_factor
        if args.fresh_denoiser:  # the same latents, a denoiser trained from the start on them
            text_encoder, unet = _fresh_text_encoder(tokenizer), UNet2DConditionModel(**TEXT_TO_IMAGE_UNET_CONFIG)
            earlier = None  # nothing of the earlier denoiser's training carries over
    else:
        tokenizer = build_clip_tokenizer([data.captions[i] for i in train.tolist()], output / "tokenizer")
        vae = AutoencoderKL(**VAE_CONFIG)
        vae_record = _train_autoencoder(vae, images[train], args, generator)
        vae_record["held_out_psnr_db"] = _autoencoder_psnr(vae, images[held_out])
        text_encoder = _fresh_text_encoder(tokenizer)
        unet = UNet2DConditionModel(**TEXT_TO_IMAGE_UNET_CONFIG)
    with torch.no_grad():
        encoded = [vae.encode(chunk).latent_dist for chunk in images[train].split(256)]
    posterior, posterior_std = torch.cat([d.mean for d in encoded]), torch.cat([d.std for d in encoded])
    if not args.continue_from:
        scaling_factor = 1.0 / posterior.std().item()
        vae.register_to_config(scaling_factor=scaling_factor)
    print(f"autoencoder: {vae_record}, scaling factor {scaling_factor:.4f}", flush=True)

    scheduler = DDPMScheduler.from_config(SCHEDULER_CONFIG)  # the same betas; it only adds noise here
    captions = [data.captions[i] for i in train.tolist()]
    token_ids = tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    empty_ids = tokenizer(
        [""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    ema = EMAModel(parameters, decay=args.ema_decay, use_ema_warmup=True, power=2 / 3)
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(args.steps, args.warmup_steps))
    alphas = scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    losses, batches = [], _batches(len(train), args.batch_size, generator)
    for step in tqdm(range(args.steps), desc="text-to-image steps", mininterval=30):
        batch = next(batches)
        if args.augment_shift or args.augment_zoom:  # a new view of each image, encoded anew
            with torch.no_grad():
                views = _zoom_and_shift(images[train[batch]], args.augment_zoom, args.augment_shift, generator)
                encoded_batch = vae.encode(views).latent_dist
            mean, std = encoded_batch.mean, encoded_batch.std
        else:
            mean, std = posterior[batch], posterior_std[batch]
        latents = (mean + std * torch.randn(mean.shape, generator=generator)) * scaling_factor
        ids = token_ids[batch].clone()
        dropped = torch.rand(len(batch), generator=generator) < args.caption_dropout
        ids[dropped] = empty_ids
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(batch),), generator=generator)
        text = text_encoder(ids)[0]
        prediction = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, encoder_hidden_states=text).sample
        weight = LOSS_WEIGHTS[args.loss](snr[timesteps])
        loss = (F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3)) * weight).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        lr_schedule.step()
        ema.step(parameters)
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(
                f"step {step + 1}: loss {sum(losses[-100:]) / 100:.4f}, {time.perf_counter() - start:.0f} s", flush=True
            )
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            _save_text_to_image(unet, text_encoder, ema, vae, tokenizer, output)
            _write_record(
                output,
                dict(
                    seed=args.seed,
                    steps=step + 1,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    warmup_steps=args.warmup_steps,
                    lr_schedule="linear warm-up, cosine to 10 %",
                    ema_decay=args.ema_decay,
                    ema="warm-up, power 2/3, U-Net and text encoder",
                    grad_clip=1.0,
                    loss=LOSS_NAMES[args.loss],
                    caption_dropout=args.caption_dropout,
                    augmentation=dict(zoom_out=args.augment_zoom, shift_px=args.augment_shift, fill="white"),
                    dataset=dict(data.provenance, train_images=len(train), held_out_images=int(held_out.sum())),
                    autoencoder=dict(vae_record, config=VAE_CONFIG, scaling_factor=round(scaling_factor, 5)),
                    unet=TEXT_TO_IMAGE_UNET_CONFIG,
                    text_encoder=TEXT_ENCODER_CONFIG,
                    scheduler=SCHEDULER_CONFIG,
                    final_loss_last_100=round(sum(losses[-100:]) / len(losses[-100:]), 5),
                    loss_every_500=[
                        round(sum(losses[i : i + 500]) / len(losses[i : i + 500]), 5)
                        for i in range(0, len(losses), 500)
                    ],
                    train_seconds=round(time.perf_counter() - start),
                    threads=torch.get_num_threads(),
                    **(
                        {
                            "continued_from": {
                                k: earlier.get(k)
                                for k in (
                                    "steps",
                                    "lr",
                                    "loss",
                                    "train_seconds",
                                    "final_loss_last_100",
                                    "loss_every_500",
                                    "continued_from",
                                )
                            },
                            "total_steps": earlier.get("total_steps", earlier["steps"]) + step + 1,
                        }
                        if earlier
                        else {}
                    ),
                ),
            )


def train_judges(args) -> None:
    """The emoji classifier (CLDR subgroups) and the contrastive image-text scorer, on the training split."""
    data, images, held_out = _emoji_training_data(args)
    train, test = (~held_out).nonzero().squeeze(1), held_out.nonzero().squeeze(1)
    subgroups = sorted({e.subgroup for e in data.emoji})
    groups = [next(e.group for e in data.emoji if e.subgroup == s) for s in subgroups]
    labels = torch.tensor([subgroups.index(e.subgroup) for e in data.emoji])
    captions = data.captions
    output = Path(args.output or JUDGES_DIR)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    settings = dict(
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.judge_lr,
        weight_decay=1e-4,
        augmentation="random shift up to 2 px (white border), Gaussian noise sd 0.05",
        dataset=dict(data.provenance, train_images=len(train), held_out_images=len(test)),
    )

    classifier = EmojiClassifier(subgroups, groups)
    _fit(
        classifier,
        train,
        args,
        generator,
        "classifier epochs",
        lambda batch: F.cross_entropy(classifier(_augment(images[batch], generator)), labels[batch]),
    )
    accuracy = classifier.accuracy(images[test], labels[test])
    subgroup_accuracy, group_accuracy = accuracy["subgroup"], accuracy["group"]
    with torch.no_grad():
        classifier.feature_scale = classifier.config["feature_scale"] = (
            1.0 / classifier.body(images[train]).std(dim=0).mean().item()
        )
    classifier.save(output / "classifier")
    print(f"classifier: held-out subgroup accuracy {subgroup_accuracy:.3f}, group accuracy {group_accuracy:.3f}")
    _write_record(
        output / "classifier",
        dict(
            settings,
            objective="cross-entropy over CLDR subgroups",
            held_out_subgroup_accuracy=round(subgroup_accuracy, 4),
            held_out_group_accuracy=round(group_accuracy, 4),
        ),
    )

    words = sorted({w for i in train.tolist() for w in caption_words(captions[i])})
    scorer = EmojiTextScorer(words)

    def contrastive_loss(batch):
        logits = scorer.logits(_augment(images[batch], generator), [captions[i] for i in batch.tolist()])
        target = torch.arange(len(batch))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    _fit(scorer, train, args, generator, "scorer epochs", contrastive_loss)
    with torch.no_grad():
        similarity = scorer.embed_images(images[test]) @ scorer.embed_captions([captions[i] for i in test.tolist()]).T
        ranks = (similarity > similarity.diag().unsqueeze(1)).sum(1)
        matched = scorer.score(images[test], [captions[i] for i in test.tolist()]).mean().item()
        shuffled = test[torch.randperm(len(test), generator=generator)]
        mismatched = scorer.score(images[test], [captions[i] for i in shuffled.tolist()]).mean().item()
    record = dict(
        held_out_top1=round((ranks == 0).float().mean().item(), 4),
        held_out_top5=round((ranks < 5).float().mean().item(), 4),
        held_out_score_matched=round(matched, 2),
        held_out_score_shuffled=round(mismatched, 2),
        candidates=len(test),
    )
    scorer.save(output / "scorer")
    print(f"scorer: {record}")
    _write_record(
        output / "scorer", dict(settings, objective="symmetric InfoNCE over image-caption pairs (CLIP's)", **record)
    )


def _fit(model, indices, args, generator, description, loss_of) -> None:
    """AdamW over shuffled batches of ``indices`` for ``args.epochs``; ``loss_of(batch)`` is the objective."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.judge_lr, weight_decay=1e-4)
    model.train()
    for _ in tqdm(range(args.epochs), desc=description, mininterval=10):
        for batch in indices[torch.randperm(len(indices), generator=generator)].split(args.batch_size):
            loss = loss_of(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def _zoom_and_shift(images: torch.Tensor, zoom_out: float, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shrunk by up to ``zoom_out`` (a share of its side; resampling blurs it) and moved by up to ``shift``
    whole pixels (an exact copy), on white.

    Many images per caption instead of one: the conditional distribution gets a spread, as a real
    caption's has, so the guided prediction is not far steeper in the noisy sample than the unguided one.
    """
    count, _, height, width = images.shape
    scale = 1 - zoom_out * torch.rand(count, generator=generator)
    offset = torch.randint(-shift, shift + 1, (count, 2), generator=generator).float()  # whole pixels: no blur
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, 0, 2], theta[:, 1, 2] = -2 * offset[:, 0] / width / scale, -2 * offset[:, 1] / height / scale
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift by up to 2 px over a white border, add faint noise: the judges must see samples, not only renderings."""
    padded = F.pad(images, (2, 2, 2, 2), value=1.0)
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()
    shifted = padded[:, :, dy : dy + images.shape[2], dx : dx + images.shape[3]]
    return shifted + 0.05 * torch.randn(shifted.shape, generator=generator)


def _train_autoencoder(vae, images, args, generator) -> dict:
    """L1 reconstruction plus a light KL term, as Stable Diffusion's autoencoder (without its GAN and LPIPS)."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(args.vae_steps, 100))
    losses, batches = [], _batches(len(images), args.batch_size, generator)
    for step in tqdm(range(args.vae_steps), desc="autoencoder steps", mininterval=30):
        batch = next(batches)
        posterior = vae.encode(images[batch]).latent_dist
        reconstruction = vae.decode(posterior.sample(generator)).sample
        loss = F.l1_loss(reconstruction, images[batch]) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(f"autoencoder step {step + 1}: loss {sum(losses[-100:]) / 100:.4f}", flush=True)
    vae.eval()
    return dict(
        steps=args.vae_steps,
        lr=args.vae_lr,
        batch_size=args.batch_size,
        loss="L1 + 1e-6 KL",
        final_loss_last_100=round(sum(losses[-100:]) / 100, 5),
    )


@torch.no_grad()
def _autoencoder_psnr(vae, images) -> float:
    reconstruction = torch.cat([vae.decode(vae.encode(chunk).latent_dist.mean).sample for chunk in images.split(256)])
    mse = ((reconstruction.clamp(-1, 1) - images) / 2).pow(2).mean().item()
    return round(10 * math.log10(1 / mse), 2)


def _save_text_to_image(unet, text_encoder, ema, vae, tokenizer, output: Path) -> None:
    """Save a Stable Diffusion folder with the EMA weights of the U-Net and the text encoder."""
    averaged_unet = UNet2DConditionModel(**TEXT_TO_IMAGE_UNET_CONFIG)
    averaged_text = type(text_encoder)(text_encoder.config)
    ema.copy_to(list(averaged_unet.parameters()) + list(averaged_text.parameters()))
    pipeline = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=averaged_text.eval(),
        tokenizer=tokenizer,
        unet=averaged_unet.eval(),
        scheduler=PNDMScheduler.from_config(SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(output, safe_serialization=True)
    scheduler_file = {"_class_name": "PNDMScheduler", "_diffusers_version": diffusers.__version__}
    scheduler_file.update(SCHEDULER_CONFIG, trained_betas=None)  # SD 1.5's keys only (see SCHEDULER_CONFIG)
    (output / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(scheduler_file, indent=2, sort_keys=True) + "\n"
    )


def _save_ema_pipeline(unet, ema, scheduler, output: Path) -> None:
    """Save the EMA weights, not the raw ones: they sample cleaner."""
    averaged = UNet2DModel(**UNET_CONFIG)
    ema.copy_to(averaged.parameters())
    diffusers.DDPMPipeline(unet=averaged.eval(), scheduler=scheduler).save_pretrained(output, safe_serialization=True)


def _write_record(directory: Path, record: dict) -> None:
    record.update(torch=torch.__version__, python=platform.python_version(), machine=platform.machine())
    (directory / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["text-to-image", "judges", "ddpm", "classifier"])
    parser.add_argument("--output", help="output folder (default: the package's embedded-model folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4000, help="DDPM optimizer steps (default 4000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=8e-4)
    parser.add_argument("--warmup-steps", type=int, default=250)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=30, help="classifier and judges epochs (default 30)")
    parser.add_argument("--judge-lr", type=float, default=2e-3, help="judges: AdamW learning rate")
    parser.add_argument(
        "--vae-steps", type=int, default=1000, help="text-to-image: autoencoder steps first (default 1000)"
    )
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument(
        "--continue-from",
        help="text-to-image: a saved model folder to train further (keeps its tokenizer and autoencoder)",
    )
    parser.add_argument(
        "--loss",
        choices=list(LOSS_WEIGHTS),
        default="mse",
        help="text-to-image: noise-prediction loss weighting (default mse, Stable Diffusion's)",
    )
    parser.add_argument(
        "--augment-zoom", type=float, default=0.0, help="text-to-image: shrink each image by up to this share (0.2)"
    )
    parser.add_argument(
        "--augment-shift", type=int, default=0, help="text-to-image: move each image by up to this many whole pixels"
    )
    parser.add_argument(
        "--fresh-denoiser",
        action="store_true",
        help="text-to-image, with --continue-from: keep its tokenizer and autoencoder only; new U-Net and text encoder",
    )
    parser.add_argument("--caption-dropout", type=float, default=0.1, help="share of empty captions, for guidance")
    args = parser.parse_args(argv)
    if args.fresh_denoiser and not args.continue_from:
        parser.error("--fresh-denoiser keeps a saved model's tokenizer and autoencoder: pass --continue-from DIR too")
    torch.set_num_threads(args.threads)
    {"text-to-image": train_text_to_image, "judges": train_judges, "ddpm": train_ddpm, "classifier": train_classifier}[
        args.model
    ](args)


if __name__ == "__main__":
    main()
