"""Every example script runs end to end, offline, on tiny pipelines saved to local directories."""

import os
import subprocess
import sys

import pytest
from PIL import Image

import deepcache
from deepcache.testing import save_tiny_pipeline

from helpers import SCRIPTS, script


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Local directories of tiny pipelines, made on first use."""
    directories = {}

    def directory(kind):
        if kind not in directories:
            directories[kind] = save_tiny_pipeline(kind, str(tmp_path_factory.mktemp(kind)))
        return directories[kind]

    return directory


def run(name, argv, capsys):
    script(name).main([*argv, "--steps", "4", "--warmup-steps" if name != "main" else "--warmup_steps", "2"])
    out = capsys.readouterr().out
    assert "baseline: " in out and "DeepCache: " in out and "speedup: " in out
    return out


def test_stable_diffusion(saved, tmp_path, capsys):
    out = run("stable_diffusion", ["--model", saved("sd"), "--output", str(tmp_path / "sd.png")], capsys)
    assert "interval 5, branch 1, non-uniform (pow 1.4, center 0.3 T)" in out
    assert Image.open(tmp_path / "sd.png").size == (128, 2 * (128 + 14))


def test_stable_diffusion_xl_with_refiner(saved, tmp_path, capsys):
    argv = ["--model", saved("sdxl"), "--refine", "--refiner-model", saved("sdxl-refiner"), "--high-noise-frac", "0.5"]
    out = run("stable_diffusion_xl", [*argv, "--cache-interval", "2", "--output", str(tmp_path / "xl.png")], capsys)
    assert "interval 2, branch 1, uniform on base and refiner" in out
    assert (tmp_path / "xl.png").exists()


def test_stable_video_diffusion_saves_a_gif(saved, tmp_path, capsys):
    argv = ["--model", saved("svd"), "--height", "64", "--width", "64", "--num-frames", "3", "--decode-chunk-size", "3"]
    run("stable_video_diffusion", [*argv, "--output", str(tmp_path / "svd.gif")], capsys)
    gif = Image.open(tmp_path / "svd.gif")
    assert gif.n_frames == 3 and gif.size == (128, 2 * (128 + 14))


def test_ddpm(saved, tmp_path, capsys):
    out = run("ddpm", ["--model", saved("ddpm"), "--batch-size", "3", "--output", str(tmp_path / "ddpm.png")], capsys)
    assert "interval 5, branch 2, uniform, DDIM sampling" in out
    assert Image.open(tmp_path / "ddpm.png").size == (3 * 128, 2 * (128 + 14))


@pytest.mark.parametrize(
    "model_type, kind, extra",
    [
        ("sd1.5", "sd", []),
        ("sd2.1", "sd", []),
        ("sdxl", "sdxl", []),
        ("svd", "svd", ["--height", "64", "--width", "64", "--num_frames", "2"]),
        ("sd-inpaint", "sd-inpaint", []),
        ("sdxl-inpaint", "sdxl-inpaint", []),
        ("sd-img2img", "sd", []),
        ("ddpm", "ddpm", []),
    ],
)
def test_main_with_every_model_type(saved, tmp_path, capsys, model_type, kind, extra):
    output = tmp_path / ("out.gif" if model_type == "svd" else "out.png")
    out = run("main", ["--model_type", model_type, "--model", saved(kind), *extra, "--output", str(output)], capsys)
    assert ("interval 5, branch 2" if model_type == "ddpm" else "interval 3, branch 0") in out
    assert output.exists()


def test_unreachable_weights_end_with_one_line_not_a_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for argv in (["stable_diffusion.py", "--model", str(tmp_path / "missing")], ["main.py", "--model_type", "ddpm"]):
        result = subprocess.run([sys.executable, str(SCRIPTS / argv[0]), *argv[1:]], capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        last_line = result.stderr.strip().splitlines()[-1]
        assert last_line.startswith("error: cannot load") and "pass --model a hub id you can download" in last_line


@pytest.mark.parametrize("kind, argv", [("ddpm", ["--batch-size", "2"]), ("sd", ["--prompts", "a red cube", "--units", "attentions"])])
def test_block_caching_script(saved, tmp_path, kind, argv):
    rows = script("block_caching").main(["--model", saved(kind), *argv, "--steps", "4", "--deltas", "0", "100", "--repeats", "1",
                                        "--profile-seeds", "1", "--output-dir", str(tmp_path)])
    exact, cached = rows
    assert exact["flop_fraction"] == 1 and exact["psnr"] == 100 and exact["mean_recomputes"] == 4  # delta 0: uncached
    assert cached["flop_fraction"] < 1 and cached["mean_recomputes"] == 1 and cached["psnr"] < 100
    assert deepcache.BlockCacheSchedule.load(tmp_path / "schedule-100.json").recompute == dict.fromkeys(cached_units(tmp_path), (0,))
    assert "| 100 | 1.0 |" in (tmp_path / "results.md").read_text()
    assert Image.open(tmp_path / "profile.png").size[0] > 500 and (tmp_path / "samples.png").exists()


def cached_units(directory):
    return deepcache.BlockCacheProfile.load(directory / "profile.json").units
