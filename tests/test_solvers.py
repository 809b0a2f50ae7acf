"""The solver registry, solver convergence and the per-band denoising error (scripts/solvers.py), on a tiny pipeline."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, PNDMScheduler
from helpers import script

from deepcache.evaluation.metrics import psnr
from deepcache.evaluation.parallel import sample_images
from deepcache.evaluation.solvers import SOLVERS, TIMESTEP_BANDS, convergence, denoising_error
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


def test_solvers_script_writes_its_table_plot_and_comparison(tmp_path, capsys):
    model = save_tiny_pipeline("sd", str(tmp_path / "sd"))
    solvers = script("solvers")
    argv = ["--model", model, "--solvers", "ddim", "dpm++karras", "--steps", "2", "--reference-steps", "4"]
    argv += ["--guidance", "5", "--prompts", "2", "--batch-size", "2"]
    first = solvers.main([*argv, "--output-dir", str(tmp_path / "a")])
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
    with pytest.raises(SystemExit):
        solvers.main(["--solvers", "heun"])
    assert "`solvers` must be among" in capsys.readouterr().err
