"""The embedded emoji text-to-image model, its tokenizer and its judges; none of it needs the emoji font."""

import json
import pathlib

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from helpers import script

from deepcache import DeepCacheStableDiffusionPipeline
from deepcache.embedded.emoji import FONT_PATH, load_catalog
from deepcache.embedded.emoji_judges import (
    EmojiClassifier,
    EmojiTextScorer,
    load_emoji_classifier,
    load_emoji_text_scorer,
)
from deepcache.embedded.text_to_image import (
    MAX_TOKENS,
    UNET_CONFIG,
    build_clip_tokenizer,
    embedded_text_to_image_path,
)
from deepcache.evaluation.metrics import emoji_category_accuracy, emoji_text_score
from deepcache.evaluation.solvers import SOLVERS

PROMPTS = ["red apple", "rocket", "flag: Japan", "dog face"]


@pytest.fixture(scope="module")
def plain_and_ours():
    plain = StableDiffusionPipeline.from_pretrained(embedded_text_to_image_path())
    ours = DeepCacheStableDiffusionPipeline.from_pretrained(embedded_text_to_image_path())
    for pipe in (plain, ours):
        pipe.set_progress_bar_config(disable=True)
    return plain, ours


def generate(pipe, prompts=PROMPTS, steps=10, **kwargs):
    generator = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    return pipe(
        prompts, num_inference_steps=steps, guidance_scale=5.0, generator=generator, output_type="np", **kwargs
    ).images


def test_tokenizer_spells_every_caption_word_as_one_token_and_still_encodes_unseen_words(tmp_path):
    captions = ["red apple", "grinning face with big eyes", "couple with heart: woman, man, medium-dark skin tone"]
    tokenizer = build_clip_tokenizer(captions, tmp_path)
    assert tokenizer.tokenize("red apple") == ["red</w>", "apple</w>"]
    assert tokenizer.tokenize("man, medium-dark") == ["man</w>", ",</w>", "medium</w>", "-</w>", "dark</w>"]
    unseen = tokenizer.tokenize("zebra")
    assert len(unseen) > 1 and "".join(unseen).replace("</w>", "") == "zebra"
    assert tokenizer.model_max_length == MAX_TOKENS
    assert type(tokenizer).from_pretrained(tmp_path).tokenize("big eyes") == ["big</w>", "eyes</w>"]


def test_shipped_tokenizer_fits_every_catalog_caption_without_truncation(plain_and_ours):
    tokenizer = plain_and_ours[0].tokenizer
    emoji, held_out = load_catalog()
    assert len(emoji) == 3641 and sum(held_out) == 364
    lengths = [len(tokenizer(e.name).input_ids) for e, out in zip(emoji, held_out) if not out]
    assert max(lengths) <= MAX_TOKENS
    assert all(t.endswith("</w>") for t in tokenizer.tokenize("grinning face with big eyes"))


def test_model_loads_through_both_pipelines_offline_in_stable_diffusions_layout(plain_and_ours):
    plain, ours = plain_and_ours
    assert type(ours.unet) is UNet2DConditionModel
    assert ours.unet.config.down_block_types == list(UNET_CONFIG["down_block_types"])
    assert ours.unet.config.mid_block_type == "UNetMidBlock2DCrossAttn"
    assert ours.vae_scale_factor == 2 and ours.unet.config.sample_size == 16
    assert DDIMScheduler.from_config(ours.scheduler.config).config.clip_sample is False  # latents are not in [-1, 1]
    size = sum(f.stat().st_size for f in pathlib.Path(embedded_text_to_image_path()).rglob("*") if f.is_file())
    assert size < 40e6
    record = json.loads((pathlib.Path(embedded_text_to_image_path()) / "training.json").read_text())
    assert record["seed"] == 0 and record["caption_dropout"] > 0 and record["dataset"]["font_version"]


def test_scheduler_file_is_stable_diffusions_so_solvers_get_their_own_spacing(plain_and_ours):
    """SD 1.5's published scheduler file names no spacing: DPM-Solver++ made from it starts every run at t = 999
    (its default "linspace"), DDIM and PNDM keep "leading", as on SD. A file naming "leading" would start
    DPM-Solver++'s 200-step runs at t = 801."""
    saved = json.loads(
        (pathlib.Path(embedded_text_to_image_path()) / "scheduler" / "scheduler_config.json").read_text()
    )
    sd15 = {"beta_end", "beta_schedule", "beta_start", "clip_sample", "num_train_timesteps", "set_alpha_to_one"}
    assert set(saved) - {"_class_name", "_diffusers_version"} == sd15 | {
        "skip_prk_steps",
        "steps_offset",
        "trained_betas",
    }
    _, ours = plain_and_ours
    for solver, spacing, first in (("dpm++", "linspace", 999), ("unipc", "linspace", 999), ("ddim", "leading", 996)):
        scheduler = SOLVERS[solver].scheduler(ours.scheduler.config)
        scheduler.set_timesteps(200)
        assert scheduler.config.timestep_spacing == spacing and int(scheduler.timesteps[0]) == first, solver
    pinned = {k: v for k, v in ours.scheduler.config.items() if k != "_use_default_values"}  # what a re-save writes
    leading = SOLVERS["dpm++"].scheduler({**pinned, "timestep_spacing": "leading"})
    leading.set_timesteps(200)
    assert int(leading.timesteps[0]) == 801


def test_caching_off_equals_diffusers_exactly_with_guidance(plain_and_ours):
    plain, ours = plain_and_ours
    expected = generate(plain)
    assert np.array_equal(generate(ours), expected)
    assert np.array_equal(generate(ours, cache_interval=1, cache_branch_id=0), expected)
    ddim = DDIMScheduler.from_config(plain.scheduler.config)
    plain.scheduler, ours.scheduler = ddim, DDIMScheduler.from_config(plain.scheduler.config)
    assert np.array_equal(generate(ours, cache_interval=1), generate(plain))


def test_samples_follow_their_prompts(plain_and_ours):
    """16 training captions (the reproduction's first prompts): the classifier finds each sample's own
    subgroup far more often than a shifted prompt's, and the scorer matches it far better."""
    prompts = script("reproduce").evaluation_prompts(16)
    subgroup = {e.name: e.subgroup for e in load_catalog()[0]}
    images = torch.from_numpy(generate(plain_and_ours[0], prompts, steps=50)).permute(0, 3, 1, 2)
    own = emoji_category_accuracy(images, [subgroup[p] for p in prompts])
    shifted = emoji_category_accuracy(images, [subgroup[p] for p in prompts[5:] + prompts[:5]])
    assert own["subgroup"] >= 0.7 and shifted["subgroup"] <= 0.2  # measured: 0.81 and 0.06
    scores = torch.stack([emoji_text_score(images, prompts[k:] + prompts[:k]) for k in range(len(prompts))])
    assert scores[0].mean() > 5 * scores[1:].mean()  # measured: 61.0 against 8.5


def test_deepcache_on_it_stays_close_to_the_uncached_images(plain_and_ours):
    _, ours = plain_and_ours
    baseline, cached = generate(ours, steps=20), generate(ours, steps=20, cache_interval=3, cache_branch_id=0)
    assert not np.array_equal(baseline, cached)
    mse = float(np.mean((baseline - cached) ** 2))
    assert 10 * np.log10(1 / mse) > 20


def test_judges_load_and_reject_bad_arguments():
    classifier, scorer = load_emoji_classifier(), load_emoji_text_scorer()
    assert len(classifier.subgroups) == 99 and "food-fruit" in classifier.subgroups
    assert dict(zip(classifier.subgroups, classifier.groups))["country-flag"] == "Flags"
    images = torch.rand(2, 3, 32, 32)
    assert classifier.features(images).shape == (2, 128)
    with pytest.raises(ValueError, match="`images` and `captions` must pair up"):
        scorer.score(images, ["rocket"])
    with pytest.raises(ValueError, match="`subgroups` must be CLDR subgroups"):
        emoji_category_accuracy(images, ["rocket", "food-fruit"])
    with pytest.raises(ValueError, match="`groups` needs one group per subgroup"):
        EmojiClassifier(["a", "b"], ["A"])
    with pytest.raises(FileNotFoundError, match="train_embedded.py judges"):
        EmojiTextScorer.load(pathlib.Path("/nonexistent"))


@pytest.mark.skipif(not FONT_PATH.exists(), reason="apt-get install fonts-noto-color-emoji")
def test_training_script_writes_a_stable_diffusion_folder_and_judges(tmp_path):
    train_embedded = script("train_embedded")
    common = ["--threads", "1", "--batch-size", "8"]
    with torch.enable_grad():  # conftest turns gradients off for every test
        train_embedded.main(
            [
                "text-to-image",
                "--steps",
                "2",
                "--vae-steps",
                "2",
                "--save-every",
                "1",
                "--loss",
                "min-snr-5",
                "--output",
                str(tmp_path / "t2i"),
                *common,
            ]
        )
        train_embedded.main(["judges", "--epochs", "1", "--output", str(tmp_path / "judges"), *common])
        train_embedded.main(
            [
                "text-to-image",
                "--steps",
                "1",
                "--continue-from",
                str(tmp_path / "t2i"),
                "--augment-shift",
                "2",
                "--augment-zoom",
                "0.1",
                "--output",
                str(tmp_path / "more"),
                *common,
            ]
        )
        train_embedded.main(
            ["text-to-image", "--steps", "1", "--continue-from", str(tmp_path / "t2i"), "--fresh-denoiser"]
            + ["--output", str(tmp_path / "fresh"), *common]
        )
    fresh = json.loads((tmp_path / "fresh" / "training.json").read_text())
    assert fresh["steps"] == 1 and "continued_from" not in fresh and "total_steps" not in fresh
    assert fresh["autoencoder"] == json.loads((tmp_path / "t2i" / "training.json").read_text())["autoencoder"]
    with pytest.raises(SystemExit):  # nothing to keep the autoencoder from
        train_embedded.main(["text-to-image", "--fresh-denoiser", "--output", str(tmp_path / "none")])
    for name in ("tokenizer.json", "merges.txt", "vocab.json"):  # the tokenizer carries over as built
        assert (tmp_path / "more" / "tokenizer" / name).read_bytes() == (
            tmp_path / "t2i" / "tokenizer" / name
        ).read_bytes()
    more = json.loads((tmp_path / "more" / "training.json").read_text())
    assert more["total_steps"] == 3 and more["continued_from"]["steps"] == 2
    assert more["loss"] == "MSE on noise (Stable Diffusion's)"  # the default
    assert more["continued_from"]["loss"] == "MSE on noise, min-SNR-5 weighted"
    assert more["augmentation"] == {"zoom_out": 0.1, "shift_px": 2, "fill": "white"}
    weights = train_embedded.LOSS_WEIGHTS
    snr = torch.tensor([20.0, 5.0, 0.5])
    assert weights["min-snr-5"](snr).tolist() == [0.25, 1.0, 1.0] and weights["mse"](snr).tolist() == [1.0] * 3
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "t2i")
    assert pipe.tokenizer.tokenize("red apple") == ["red</w>", "apple</w>"]
    assert "timestep_spacing" in pipe.scheduler.config["_use_default_values"]  # written as SD 1.5's file
    record = json.loads((tmp_path / "t2i" / "training.json").read_text())
    assert record["steps"] == 2 and record["autoencoder"]["steps"] == 2 and record["dataset"]["train_images"] == 3277
    assert "held_out_group_accuracy" in json.loads((tmp_path / "judges" / "classifier" / "training.json").read_text())
    assert "held_out_top1" in json.loads((tmp_path / "judges" / "scorer" / "training.json").read_text())


@pytest.mark.skipif(not FONT_PATH.exists(), reason="apt-get install fonts-noto-color-emoji (the real images FD needs)")
def test_reproduction_on_the_emoji_model_has_every_table(tmp_path):
    reproduce = script("reproduce")
    payload = reproduce.main(
        [
            "--steps",
            "4",
            "--samples",
            "4",
            "--groups",
            "2",
            "--kid-subset",
            "2",
            "--batch-size",
            "4",
            "--intervals",
            "2",
            "--nonuniform-intervals",
            "3",
            "--sweep-interval",
            "2",
            "--sweep-branches",
            "0",
            "--block-units",
            "attentions",
            "--block-deltas",
            "0.1",
            "--profile-runs",
            "1",
            "--solvers",
            "ddim",
            "dpm++",
            "--other-guidance",
            "1",
            "--calibrated-intervals",
            "--adaptive-intervals",
            "--compose-interval",
            "2",
            "--gate-steps",
            "2",
            "--compose-deltas",
            "--output-dir",
            str(tmp_path),
        ]
    )
    names = [run["name"] for run in payload["runs"]]
    assert names == [
        "DDIM-4",
        "DDIM-4 guidance 1",
        "N=2 b1 uniform",
        "N=3 b1 non-uniform",
        "DDIM-3",
        "DPM-Solver++ 2M-4",
        "DPM-Solver++ 2M N=2 b1 uniform",
        "DPM-Solver++ 2M-3",
        "N=2 b0 uniform",
        "Block Caching attentions delta=0.1",
        "T-GATE gate 2",
        "N=2 b1 + T-GATE gate 2",
    ]
    by_name = {run["name"]: run for run in payload["runs"]}
    assert by_name["DPM-Solver++ 2M-3"]["matches"] == "DPM-Solver++ 2M N=2 b1 uniform"
    assert (
        by_name["DPM-Solver++ 2M-4"]["psnr"] is None and by_name["DPM-Solver++ 2M-3"]["psnr"] > 0
    )  # against its own baseline
    assert 0 <= by_name["N=2 b1 uniform"]["group_accuracy"] <= 1 and by_name["N=2 b1 uniform"]["text_score"] >= 0
    assert 0 < payload["real_judged"]["group_accuracy"] <= 1
    gated, both = by_name["T-GATE gate 2"], by_name["N=2 b1 + T-GATE gate 2"]  # FLOPs counted on a real call
    assert 1 < gated["ideal"] < 2 and both["ideal"] > max(gated["ideal"], by_name["N=2 b1 uniform"]["ideal"])
    tables = (tmp_path / "tables.md").read_text()
    for title in [
        "other guidance scales",
        "Quality vs interval N (branch 1)",
        "Equal FLOPs: DDIM",
        "Equal FLOPs: DPM-Solver++",
        "Branch sweep at N = 2",
        "Block Caching",
        "Compositions at N = 2",
    ]:
        assert title in tables


def test_training_views_are_whole_pixel_shifts_or_shrunk_copies_on_white():
    zoom_and_shift = script("train_embedded")._zoom_and_shift
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    assert torch.allclose(zoom_and_shift(images, 0.0, 0, generator), images, atol=1e-6)
    shifted = zoom_and_shift(images, 0.0, 2, generator)
    for image, view in zip(images, shifted):  # an exact copy moved by whole pixels: no resampling blur
        moves = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.allclose(torch.roll(image, (dy, dx), (1, 2))[:, 2:-2, 2:-2], view[:, 2:-2, 2:-2], atol=1e-5)
        ]
        assert len(moves) == 1
    shrunk = zoom_and_shift(-torch.ones(1, 3, 32, 32), 0.5, 0, torch.Generator().manual_seed(1))  # to 0.62 of its side
    assert shrunk[0, :, :5, :].eq(1).all() and shrunk[0, :, 16, 16].eq(-1).all()  # a white margin, the image inside
