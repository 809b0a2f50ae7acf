"""The measuring instruments: embedded model, benchmark, data-parallel sampling, reproduction, training."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from helpers import SCRIPTS, script
from PIL import Image

from deepcache import DeepCacheConfig, DeepCacheDDPMPipeline
from deepcache.embedded import UNET_CONFIG, embedded_model_path, load_classifier
from deepcache.evaluation.benchmark import benchmark, branch_flops, denoise, markdown_table, settings_grid
from deepcache.evaluation.benchmark_models import build_unet, loop_inputs
from deepcache.evaluation.parallel import sample_images
from deepcache.evaluation.pipeline_timings import pipeline_and_loop_seconds
from deepcache.measurement import ideal_speedup


def test_embedded_model_loads_from_its_path_and_fits_the_size_budget():
    path = pathlib.Path(embedded_model_path())
    pipe = DeepCacheDDPMPipeline.from_pretrained(path)
    assert type(pipe.unet).__name__ == "UNet2DModel"  # cache-aware only during a call
    assert {key: pipe.unet.config[key] for key in UNET_CONFIG} == {
        key: (list(v) if isinstance(v, tuple) else v) for key, v in UNET_CONFIG.items()
    }
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) <= 20 * 2**20
    record = json.loads((path / "training.json").read_text())
    assert record["seed"] == 0 and record["steps"] > 0 and record["unet"]["block_out_channels"] == [32, 64, 64, 64]


def test_embedded_model_draws_digits_the_classifier_is_sure_of():
    """Trained weights, not noise: the digit classifier is confident on what the model draws."""
    from diffusers import DDIMScheduler

    torch.manual_seed(0)
    pipe = DeepCacheDDPMPipeline.from_pretrained(embedded_model_path())
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    images = sample_images(pipe, list(range(16)), 16, num_inference_steps=20)
    confidence = load_classifier()(images * 2 - 1).softmax(-1).max(-1).values.mean().item()
    noise = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert confidence > 0.8
    assert load_classifier()(noise * 2 - 1).softmax(-1).max(-1).values.mean().item() < confidence


def test_benchmark_counts_flops_times_and_matches_the_original_helper(original_helper):
    settings = settings_grid([2], [1, 2], ["uniform", "non-uniform"])
    rows = benchmark("tiny-ddpm", settings, steps=6, repeats=1, original=original_helper, progress=False)
    flops = branch_flops("tiny-ddpm", [1, 2])
    assert len(rows) == 4
    for row, setting in zip(rows, settings):
        full, cached = flops[setting.cache_branch_id]
        assert row.full_gflops == full / 1e9 and row.cached_gflops == cached / 1e9 < row.full_gflops
        assert row.ideal_speedup == ideal_speedup(full, cached, 6, len(setting.full_steps(6)))
        assert row.speedup == row.baseline_s / row.deepcache_s and row.cache_mb > 0
        assert row.baseline_peak_mb is None  # CPU: no allocator statistics
        if setting.uniform:
            assert row.max_diff_vs_original == 0.0 and row.ours_over_original_speed > 0
        else:  # the original helper has no non-uniform schedule
            assert row.original_s is None
    table = markdown_table(rows)
    assert table.count("\n") == 5 and "| tiny-ddpm | 16x16 | 1 | 6 | 2 | 1 | non-uniform |" in table


def test_benchmark_loop_caches_what_the_schedule_says():
    unet = build_unet("tiny-sd")
    inputs = loop_inputs("tiny-sd", unet, batch=1)
    baseline, no_cache = denoise(unet, inputs, 4)
    every_step_full, _ = denoise(unet, inputs, 4, DeepCacheConfig(cache_interval=1, cache_branch_id=0))
    cached, cache_bytes = denoise(unet, inputs, 4, DeepCacheConfig(cache_interval=2, cache_branch_id=0))
    assert torch.allclose(every_step_full, baseline, atol=1e-5) and no_cache == 0
    assert not torch.allclose(cached, baseline, atol=1e-4)
    assert cache_bytes > 0
    (adaptive,) = settings_grid([2], [0], ["adaptive"])  # the run-time path, deciding as uniform N = 2 does
    assert adaptive.adaptive and torch.equal(denoise(unet, inputs, 4, adaptive)[0], cached)
    with pytest.raises(ValueError, match="'uniform', 'non-uniform', 'adaptive'"):
        settings_grid([2], [0], ["calibrated"])


def test_benchmark_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`model` must be one of"):
        benchmark("sd9", [])
    with pytest.raises(ValueError, match="`schedules` must contain"):
        settings_grid([3], [0], ["fast"])
    with pytest.raises(ValueError, match="`repeats` must be at least 1"):
        benchmark("tiny-ddpm", [], repeats=0)


def test_benchmark_script_writes_json_and_markdown(tmp_path, capsys):
    argv = [
        "--model",
        "tiny-sd",
        "--steps",
        "4",
        "--intervals",
        "2",
        "--branches",
        "0",
        "--repeats",
        "1",
        "--json",
        str(tmp_path / "out.json"),
        "--markdown",
        str(tmp_path / "out.md"),
    ]
    script("benchmark").main(argv)
    payload = json.loads((tmp_path / "out.json").read_text())
    assert payload["rows"][0]["interval"] == 2 and "thread" in payload["machine"]
    assert "| tiny-sd | 128x128 |" in (tmp_path / "out.md").read_text()
    with pytest.raises(SystemExit):
        script("benchmark").main(["--model", "sd1.5", "--resolution", "100"])
    assert "multiple of 8" in capsys.readouterr().err


REPRODUCE_SMOKE = [
    "--embedded",
    "digits",
    "--steps",
    "4",
    "--samples",
    "4",
    "--groups",
    "2",
    "--kid-subset",
    "2",
    "--batch-size",
    "3",
    "--intervals",
    "2",
    "--nonuniform-intervals",
    "3",
    "--sweep-interval",
    "2",
    "--sweep-branches",
    "0",
    "1",
    "--block-units",
    "all",
    "--block-deltas",
    "0.1",
    "--profile-runs",
    "1",
    "--calibrated-intervals",
    "2",
    "--adaptive-intervals",
    "2",
    "--compose-interval",
    "2",
    "--compose-deltas",
    "0.1",
]


def test_reproduction_smoke_run_in_one_and_in_two_processes(tmp_path):
    """Two accelerate CPU processes take their shares of the seed batches; the gathered samples and
    scores equal the one-process run's (batches of 3 over 8 seeds: uneven shares)."""
    reproduce = script("reproduce")
    payload = reproduce.main([*REPRODUCE_SMOKE, "--output-dir", str(tmp_path / "one")])
    names = [run["name"] for run in payload["runs"]]
    assert names == [
        "DDIM-4",
        "N=2 b2 uniform",
        "N=3 b2 non-uniform",
        "N=2 b2 calibrated",
        "N=2 b2 adaptive",
        "DDIM-3",
        "N=2 b0 uniform",
        "N=2 b1 uniform",
        "Block Caching all delta=0.1",
        "N=2 b2 + Block Caching all delta=0.1",
    ]
    baseline, cached = payload["runs"][0], payload["runs"][1]
    assert baseline["psnr"] is None and 0 < cached["ssim"] < 1 and len(cached["fd"]) == 2
    assert payload["runs"][5]["matches"] == "N=2 b2 uniform" and payload["samples_per_setting"] == 8
    block = payload["runs"][-2]
    assert block["ideal"] == pytest.approx(1 / block["flop_fraction"]) and block["ideal"] > 1 and block["psnr"] > 0
    by_name = {run["name"]: run for run in payload["runs"]}
    assert by_name["N=2 b2 calibrated"]["ideal"] == cached["ideal"]  # the same full-step budget, placed by calibration
    adaptive = by_name["N=2 b2 adaptive"]  # three batches of seeds, each deciding its own full steps
    full, cached_flops = payload["flops"]["2"]["full"], payload["flops"]["2"]["cached"]
    counts = adaptive["full_steps_per_call"]
    assert len(counts) == 3 and all(1 <= k <= 4 for k in counts) and adaptive["threshold"] > 0
    assert adaptive["ideal"] == pytest.approx(4 * full / (sum(k * full + (4 - k) * cached_flops for k in counts) / 3))
    composed = by_name["N=2 b2 + Block Caching all delta=0.1"]  # counted on a real call: more saved than by either part
    assert composed["ideal"] > max(cached["ideal"], block["ideal"])
    tables = (tmp_path / "one" / "tables.md").read_text()
    assert "Real-vs-real floor" in tables and "| N=2 b2 uniform | 4 |" in tables and "### Block Caching" in tables
    assert "### Compositions at N = 2" in tables and "### Equal budgets" in tables and "adaptive (threshold" in tables
    assert Image.open(tmp_path / "one" / "quality_vs_speedup.png").size[0] > 500

    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(SCRIPTS / "reproduce.py"),
        *REPRODUCE_SMOKE,
        "--output-dir",
        str(tmp_path / "two"),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["processes"] == 2
    one_samples, _, one_counts = torch.load(tmp_path / "one" / "samples.pt")
    two_samples, _, two_counts = torch.load(tmp_path / "two" / "samples.pt")
    assert one_counts == two_counts
    assert one_samples.keys() == two_samples.keys()
    assert all(torch.equal(one_samples[name], two_samples[name]) for name in one_samples)
    assert [run["fd"] for run in two["runs"]] == [list(run["fd"]) for run in payload["runs"]]

    # Reusing samples scores the stored settings again and samples only the new one.
    rescored = reproduce.main(
        [*REPRODUCE_SMOKE, "--output-dir", str(tmp_path / "two"), "--reuse-samples", "--block-deltas", "0.1", "0.5"]
    )
    kids = {run["name"]: list(run["kid"]) for run in rescored["runs"]}
    assert [kids[run["name"]] for run in two["runs"]] == [run["kid"] for run in two["runs"]]
    stored, seconds, _ = torch.load(tmp_path / "two" / "samples.pt")
    assert list(stored)[-1] == "Block Caching all delta=0.5" and len(stored) == len(seconds) == len(names) + 1
    with pytest.raises(SystemExit):
        reproduce.main(["--samples", "10", "--kid-subset", "50"])
    with pytest.raises(ValueError, match="`batch_size` must be at least 1"):
        sample_images(None, [0], 0)


def test_training_script_writes_loadable_models_and_their_records(tmp_path):
    train_embedded = script("train_embedded")
    with torch.enable_grad():  # conftest turns gradients off for every test
        train_embedded.main(
            [
                "ddpm",
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--save-every",
                "1",
                "--threads",
                "1",
                "--output",
                str(tmp_path / "ddpm"),
            ]
        )
        train_embedded.main(["classifier", "--epochs", "1", "--threads", "1", "--output", str(tmp_path / "classifier")])
    pipe = DeepCacheDDPMPipeline.from_pretrained(tmp_path / "ddpm")
    assert pipe.unet.config.block_out_channels == [32, 64, 64, 64]
    record = json.loads((tmp_path / "ddpm" / "training.json").read_text())
    assert record["steps"] == 2 and record["seed"] == 0 and "sklearn digits" in record["dataset"]
    from deepcache.embedded import DigitClassifier

    classifier = DigitClassifier.load(tmp_path / "classifier")
    assert classifier.feature_scale > 0 and "held_out_accuracy" in json.loads(
        (tmp_path / "classifier" / "training.json").read_text()
    )


def test_benchmark_compile_mode_times_eager_and_compiled_loops_uncached_and_cached(capsys):
    """``--compile``: four interleaved loops; here compiled with the eager backend (inductor takes minutes on this
    CPU)."""
    import functools

    from deepcache.evaluation.pipeline_timings import compile_seconds

    module = script("benchmark")
    module.compile_seconds = functools.partial(compile_seconds, backend="eager")
    module.main(
        [
            "--compile",
            "default",
            "--model",
            "tiny-sd",
            "--steps",
            "4",
            "--intervals",
            "2",
            "--branches",
            "1",
            "--repeats",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert "mode default, dynamic=False" in out and "interval 2, branch 1, uniform" in out
    assert "| eager |" in out and "| compiled |" in out and "both " in out


def test_benchmark_times_the_whole_pipeline_beside_the_u_net_loop(capsys):
    """``--pipeline``: uncached and each setting, the bare loop and the pipeline call users make, interleaved."""
    rows = pipeline_and_loop_seconds("embedded", [DeepCacheConfig(3, 0)], steps=6, batch=2, repeats=1)
    assert [row["setting"] for row in rows] == [None, DeepCacheConfig(3, 0)]
    assert all(row["loop_s"] > 0 and row["pipeline_s"] > 0 for row in rows)
    assert rows[0]["loop_speedup"] == rows[0]["pipeline_speedup"] == 1.0
    with pytest.raises(ValueError, match="to time its whole pipeline"):
        pipeline_and_loop_seconds("sd1.5", [])
    script("benchmark").main(
        [
            "--pipeline",
            "--model",
            "embedded",
            "--steps",
            "4",
            "--intervals",
            "2",
            "--branches",
            "0",
            "--repeats",
            "1",
            "--batch",
            "1",
        ]
    )
    table = capsys.readouterr().out
    assert (
        "| uncached |" in table
        and "| interval 2, branch 0, uniform |" in table
        and "pipeline over loop, per step" in table
    )


def test_branch_flop_counts_are_kept_in_a_bounded_cache(monkeypatch):
    from deepcache.measurement import flops

    monkeypatch.setattr(flops, "BRANCH_FLOPS_KEPT", 2)
    monkeypatch.setattr(flops, "_BRANCH_FLOPS", type(flops._BRANCH_FLOPS)())
    monkeypatch.setattr(
        flops, "_count_branch_flops", lambda unet, args, kwargs, branches: {b: (1, 0) for b in branches}
    )
    unet = build_unet("embedded", "meta")
    for batch in (1, 2, 3):
        flops.branch_step_flops(unet, (torch.empty(batch, 3, 32, 32, device="meta"), 1), {}, [0])
    kept = list(flops._BRANCH_FLOPS)
    assert len(kept) == 2 and "[2, 3, 32, 32]" in kept[0] and "[3, 3, 32, 32]" in kept[1]  # the oldest went first


def test_benchmark_loop_feeds_cached_steps_the_linear_forecast():
    """The hand-written loop's forecast equals the pipelines': the linear rule from the last two full steps."""
    from deepcache.evaluation.benchmark import denoise
    from deepcache.evaluation.benchmark_models import build_unet, loop_inputs

    unet = build_unet("tiny-sd")
    inputs = loop_inputs("tiny-sd", unet, 1)
    given = []
    original_forward = type(unet).forward

    def recording(self, *args, replicate_prev_features=None, **kwargs):
        given.append(replicate_prev_features)
        return original_forward(self, *args, replicate_prev_features=replicate_prev_features, **kwargs)

    type(unet).forward = recording
    try:
        _, reuse_bytes = denoise(unet, inputs, 7, DeepCacheConfig(3, 0))
        reuse = given[:]
        given.clear()
        _, linear_bytes = denoise(unet, inputs, 7, DeepCacheConfig(3, 0, cache_forecast="linear"))
    finally:
        type(unet).forward = original_forward
    assert linear_bytes == 2 * reuse_bytes  # one more stored feature
    assert given[1] is not None and torch.equal(given[1], reuse[1])  # one full step behind: reuse
    assert not torch.equal(given[4], reuse[4])  # full steps 0 and 3 behind: a forecast


def test_forecast_cost_times_the_forecast_beside_a_cached_step(capsys):
    script("benchmark").main(["--forecast-cost", "--model", "tiny-sd", "--branches", "0", "1", "--repeats", "2"])
    out = capsys.readouterr().out
    assert "| branch | feature | cached step | linear forecast | share of the cached step |" in out
    assert out.count(" % |") == 2


def test_gpu_check_dry_run_writes_every_part(tmp_path):
    argv = ["--tiny", "--batches", "1", "--intervals", "3", "--branches", "0", "--output-dir", str(tmp_path)]
    report = script("gpu_check").main(argv)
    assert {r["schedule"] for r in report["loops"]} == {"uniform", "uniform, linear"}
    assert report["pipelines"][0]["model"] == "tiny-sd" and len(report["compile"]) == 2 and not report["skipped"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert "### Whole pipeline" in table and "### torch.compile (eager)" in table
    assert json.loads((tmp_path / "gpu_check.json").read_text())["arguments"]["tiny"]
    skipped = script("gpu_check").main([*argv, "--time-limit", "0"])
    assert skipped["skipped"][0] == "loop tiny-sd batch 1" and not skipped["loops"]


def test_forecast_script_picks_short_intervals_and_writes_its_tables(tmp_path, capsys):
    forecast = script("forecast")
    flops = {0: (572473344, 73760768), 1: (572473344, 215351296)}  # the emoji model's
    assert forecast.setting_for(2.3, 50, flops) == {"branch": 0, "interval": 3, "ideal": pytest.approx(2.3527, 1e-3)}
    assert forecast.setting_for(1.5, 50, flops)["interval"] == 2
    argv = ["--solvers", "ddim", "--runs", "6:5", "--budgets", "2", "--samples", "2", "--calibration-prompts", "2"]
    payload = forecast.main([*argv, "--batch-size", "2", "--output-dir", str(tmp_path)])
    assert [r["method"] for r in payload["rows"]] == ["fewer steps", "reuse", "linear", "auto", "fitted"]
    assert (tmp_path / "forecast_vs_speedup.png").exists() and "| 2x |" in (tmp_path / "tables.md").read_text()
    again = forecast.main([*argv, "--batch-size", "2", "--output-dir", str(tmp_path), "--methods", "fitted", "--merge"])
    assert [r["method"] for r in again["rows"]] == ["fewer steps", "reuse", "linear", "auto", "fitted"]
    assert again["rows"][:4] == payload["rows"][:4] and again["rows"][4]["meta"]["chosen"]


def test_forecast_errors_script_measures_each_cached_step_where_it_is_made(tmp_path):
    argv = ["--solvers", "dpm++", "--guidance", "1", "7.5", "--steps", "7", "--prompts", "2", "--intervals", "3", "2"]
    payload = script("forecast_errors").main([*argv, "--offset", "5", "--output-dir", str(tmp_path)])
    assert [(r["guidance"], r["interval"], r["forecast"]) for r in payload["rows"]] == [
        (g, n, f) for g in (1.0, 7.5) for n in (3, 2) for f in ("reuse", "linear", "auto")
    ]
    for row in payload["rows"]:
        cached = [i for i in range(7) if i % row["interval"]]  # uniform: every N-th iteration full
        assert len(row["steps"]) == len(cached) and all(s["guided"] > 0 for s in row["steps"])
        assert ("unconditional" in row["steps"][0]) == (row["guidance"] > 1)
    assert (tmp_path / "forecast_errors.png").exists()
    assert "| DPM-Solver++ 2M, 7.5 | " in (tmp_path / "tables.md").read_text()
