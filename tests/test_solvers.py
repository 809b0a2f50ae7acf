"""The solver registry, solver convergence and the per-band denoising error (scripts/solvers.py), on a tiny pipeline."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, PNDMScheduler
from helpers import script

from deepcache.embedded.emoji import FONT_PATH, load_catalog, render
from deepcache.evaluation.metrics import emoji_prompt_following, psnr
from deepcache.evaluation.parallel import sample_images
from deepcache.evaluation.solvers import SOLVERS, TIMESTEP_BANDS, convergence, denoising_error, guidance_stiffness
from deepcache.testing import save_tiny_pipeline, tiny_pipeline

PROMPTS = ["red apple", "a cat"]


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline("sd")


def test_solvers_keep_the_pipelines_schedule_and_set_their_own_settings(pipe):
    config = PNDMScheduler.from_config(pipe.scheduler.config, timestep_spacing="leading").config
    karras = SOLVERS["dpm++karras"].scheduler(config)
    assert type(karras) is DPMSolverMultistepScheduler and karras.config.use_karras_sigmas
    assert karras.config.algorithm_type == "dpmsolver++" and karras.config.solver_order == 2
    assert not SOLVERS["dpm++"].scheduler(config).config.use_karras_sigmas
    for solver in SOLVERS.values():
        scheduler = solver.scheduler(config)
        assert scheduler.config.timestep_spacing == "leading" and scheduler.config.steps_offset == 1
        assert scheduler.config.beta_schedule == "scaled_linear"
    assert (
        type(SOLVERS["plms"].scheduler(config)) is PNDMScheduler
        and SOLVERS["plms"].scheduler(config).config.skip_prk_steps
    )
    assert [n for n, s in SOLVERS.items() if s.stochastic] == ["euler-a"]
    assert SOLVERS["euler-a"].scheduler_class is EulerAncestralDiscreteScheduler


def test_convergence_scores_each_solver_against_its_own_reference(pipe):
    own = pipe.scheduler
    rows = convergence(pipe, PROMPTS, solvers=["ddim", "plms"], steps=(2, 3), reference_steps=5, guidance_scales=(5.0,))
    assert pipe.scheduler is own
    assert [(r["solver"], r["steps"]) for r in rows] == [("ddim", 2), ("ddim", 3), ("plms", 2), ("plms", 3)]
    assert rows[0]["reference_vs_ddim"] == 100.0 and rows[2]["reference_vs_ddim"] < 100.0
    # by hand: PLMS at 3 steps against PLMS at 5, same seeds
    pipe.scheduler = PNDMScheduler.from_config(own.config, skip_prk_steps=True)
    try:
        sample = lambda steps: sample_images(pipe, [0, 1], 2, PROMPTS, num_inference_steps=steps, guidance_scale=5.0)  # noqa: E731
        expected = psnr(sample(5), sample(3)).clamp(max=100).mean().item()
    finally:
        pipe.scheduler = own
    assert rows[3]["psnr"] == pytest.approx(expected, abs=1e-4)
    assert rows[3]["label"] == "PLMS" and rows[3]["reference_steps"] == 5 and rows[3]["guidance"] == 5.0


def test_convergence_refuses_bad_arguments_before_sampling(pipe):
    with pytest.raises(ValueError, match=r"`solvers` must be among \['ddim', 'dpm\+\+'"):
        convergence(pipe, PROMPTS, solvers=["heun"])
    with pytest.raises(ValueError, match=r"`steps` must be between 1 and `reference_steps` - 1 \(9\), but got \[10\]"):
        convergence(pipe, PROMPTS, steps=[10], reference_steps=10)


def test_denoising_error_per_band_carries_the_noise_error_to_the_latent(pipe):
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    rows = denoising_error(pipe, images, ["red apple", "a cat", ""], bands=((10, 11), (500, 501)), draws=1)
    alphas = DDIMScheduler.from_config(pipe.scheduler.config).alphas_cumprod
    assert [r["band"] for r in rows] == [[10, 11], [500, 501]]
    for row, t in zip(rows, (10, 500)):
        assert row["noise_mse"] > 0
        assert row["latent_mse"] == pytest.approx(row["noise_mse"] * ((1 - alphas[t]) / alphas[t]).item(), rel=1e-5)
    assert denoising_error(pipe, images, ["red apple", "a cat", ""], bands=((10, 11),), draws=1) == rows[:1]  # seeded
    assert TIMESTEP_BANDS[0][0] == 0 and TIMESTEP_BANDS[-1][1] == 1000
    with pytest.raises(ValueError, match="`images` and `captions` must pair up"):
        denoising_error(pipe, images, ["red apple"])


def test_guidance_stiffness_is_the_guided_predictions_growth_factor(pipe):
    """Guidance 1 gives the conditional prediction and 0 the unconditional one, so their growth factors match."""
    one = guidance_stiffness(pipe, PROMPTS, timesteps=(801, 101), guidance_scale=1.0, iterations=3)
    zero = guidance_stiffness(pipe, PROMPTS, timesteps=(801, 101), guidance_scale=0.0, iterations=3)
    assert [r["timestep"] for r in one] == [801, 101]
    for a, b in zip(one, zero):
        assert a["guided"] == pytest.approx(a["conditional"], rel=1e-3)
        assert b["guided"] == pytest.approx(b["unconditional"], rel=1e-3)
        assert a["unconditional"] == b["unconditional"] > 0 and a["difference"] > 0


def test_solvers_script_writes_its_table_plot_and_comparison(tmp_path, capsys):
    model = save_tiny_pipeline("sd", str(tmp_path / "sd"))
    solvers = script("solvers")
    argv = ["--model", model, "--solvers", "ddim", "dpm++karras", "--steps", "2", "--reference-steps", "4"]
    argv += ["--guidance", "5", "--prompts", "2", "--batch-size", "2"]
    first = solvers.main([*argv, "--output-dir", str(tmp_path / "a"), "--stiffness"])
    assert [r["timestep"] for r in first["stiffness"]] == [901, 801, 601, 401, 201, 81]
    assert [r["solver"] for r in first["convergence"]] == ["ddim", "dpm++karras"]
    again = solvers.main(
        [*argv, "--output-dir", str(tmp_path / "b"), "--compare", str(tmp_path / "a" / "results.json")]
    )
    table = (tmp_path / "b" / "tables.md").read_text()
    assert "| DPM-Solver++ 2M Karras | 5 | 2 |" in table and "| PSNR | before |" in table
    psnr_now = again["convergence"][1]["psnr"]
    assert f"| {psnr_now:.1f} | {first['convergence'][1]['psnr']:.1f} |" in table
    assert (tmp_path / "b" / "convergence.png").stat().st_size > 0
    assert json.loads((tmp_path / "b" / "results.json").read_text())["model"] == "sd"
    redrawn = solvers.main(
        ["--redraw", "--output-dir", str(tmp_path / "a"), "--compare", str(tmp_path / "b" / "results.json")]
    )
    assert redrawn == first and "| timestep | u | c | c - u | guided |" in (tmp_path / "a" / "tables.md").read_text()
    with pytest.raises(SystemExit):
        solvers.main(["--solvers", "heun"])
    assert "`solvers` must be among" in capsys.readouterr().err


@pytest.mark.skipif(not FONT_PATH.exists(), reason="apt-get install fonts-noto-color-emoji")
def test_prompt_following_of_a_pipeline_that_draws_the_training_renderings_is_near_perfect():
    """A stand-in pipeline that returns each prompt's own rendering: the judges must find every colour and
    almost every subgroup, on training and on held-out captions alike."""
    emoji = {e.name: e for e in load_catalog()[0]}

    def draw(prompt, generator, output_type, **kwargs):
        assert output_type == "np" and kwargs == {"num_inference_steps": 3} and len(generator) == len(prompt)
        return SimpleNamespace(images=render([emoji[p] for p in prompt], 32).astype(np.float32) / 255)

    scores = emoji_prompt_following(draw, samples=16, batch_size=8, num_inference_steps=3)
    assert scores["colour_words"] == 1.0
    assert scores["training_subgroup"] >= 0.8 and scores["held_out_group"] >= 0.6
    assert scores["training_text_score"] > scores["held_out_text_score"] > 30
