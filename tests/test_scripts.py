"""Every example script runs end to end, offline, on tiny pipelines saved to local directories."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from helpers import SCRIPTS, script
from PIL import Image

import deepcache
from deepcache.evaluation import examples
from deepcache.testing import save_tiny_pipeline


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


def test_text_to_video_zero_saves_a_gif(saved, tmp_path, capsys):
    argv = ["--model", saved("sd"), "--no-safety-checker", "--frames", "3", "--output", str(tmp_path / "t2v.gif")]
    out = run("text_to_video_zero", argv, capsys)
    assert "interval 3, branch 1, uniform, per loop; 3 frames, 32x32" in out
    gif = Image.open(tmp_path / "t2v.gif")
    assert gif.n_frames == 3 and gif.size == (128, 2 * (128 + 14))


def test_animatediff_saves_a_gif(saved, tmp_path, capsys):
    argv = ["--model", saved("animatediff"), "--frames", "3", "--output", str(tmp_path / "animatediff.gif")]
    out = run("animatediff", argv, capsys)
    assert "interval 3, branch 0, uniform; 3 frames, 32x32" in out
    gif = Image.open(tmp_path / "animatediff.gif")
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


UNLOADABLE = [  # (script and arguments, what its one line must say)
    (["stable_diffusion.py", "--model", "{tmp}/missing"], "is not a directory"),
    (["block_caching.py", "--model", "./does-not-exist"], "is not a directory"),
    (["main.py", "--model_type", "ddpm"], "cannot load --model 'google/ddpm-cifar10-32': "),
    (["block_caching.py", "--model", "org/not-downloadable"], "cannot load --model 'org/not-downloadable': "),
]
# Runs each script as __main__ in one process (importing diffusers once); any exception other than the
# scripts' one-line SystemExit escapes as a traceback and a non-zero exit.
DRIVER = """
import runpy, sys
for run in sys.argv[1:]:
    sys.argv = run.split("\\t")
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as stop:
        print("EXIT", repr(stop.code))
"""


def test_unloadable_weights_end_with_one_line_with_the_reason(tmp_path):
    runs = ["\t".join([str(SCRIPTS / argv[0]), *(a.format(tmp=tmp_path) for a in argv[1:])]) for argv, _ in UNLOADABLE]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", DRIVER, *runs], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    messages = [eval(line[len("EXIT ") :]) for line in result.stdout.splitlines() if line.startswith("EXIT ")]
    assert len(messages) == len(UNLOADABLE)
    for message, (_, reason) in zip(messages, UNLOADABLE):
        assert isinstance(message, str) and "\n" not in message  # Python prints it as the one last line, exit status 1
        assert message.startswith("error: ") and reason in message
        assert message.endswith(
            ("or a local save_pretrained folder.", "or a hub id such as 'org/name'.")
        )  # the reason whole, then what to do
        assert "..." not in message


def test_compare_reports_the_median_of_interleaved_runs(monkeypatch, capsys, tmp_path):
    """One stalled baseline run must not decide the speedup (it once printed 79x)."""
    order, seconds = [], iter([30.0, 0.5, 1.0, 0.5, 1.0, 0.5])  # baseline, DeepCache, interleaved; the first stalls
    image = [Image.new("RGB", (8, 8))]

    def timed(function, steps):
        order.append(function.__name__)
        return function(steps), next(seconds)

    def baseline(steps):
        return image

    def deepcache(steps):
        return image

    monkeypatch.setattr(examples, "timed", timed)
    speedup = examples.compare(baseline, deepcache, 4, 0, str(tmp_path / "out.png"), repeats=3)
    assert order == ["baseline", "deepcache"] * 3
    assert speedup == 2.0 and "median of 3" in capsys.readouterr().out


def test_video_size_defaults_to_the_models(saved, tmp_path, capsys):
    """576x1024 would never finish on a tiny model on CPU: SVD's 9:16 frame is scaled to the model's size."""
    run(
        "stable_video_diffusion",
        ["--model", saved("svd"), "--num-frames", "2", "--decode-chunk-size", "2", "--output", str(tmp_path / "v.gif")],
        capsys,
    )
    assert Image.open(tmp_path / "v.gif").size == (
        128,
        2 * (128 + 14),
    )  # 16x16 frames (sample size 8 x VAE factor 2), shown at 128 px


def test_default_sizes_follow_the_model_config():
    def pipe(sample_size, levels):
        config = SimpleNamespace(sample_size=sample_size, block_out_channels=(320,) * levels)
        return SimpleNamespace(unet=SimpleNamespace(config=config), vae_scale_factor=8)

    assert examples.model_size(pipe(96, 4), video=True) == (576, 1024)  # SVD and SVD-XT, as diffusers defaults
    assert examples.model_size(pipe(64, 4)) == (512, 512)  # SD 1.5
    assert examples.model_size(pipe(32, 2), video=True) == (192, 336)


def test_refiner_with_a_local_base_needs_a_refiner_model(saved):
    with pytest.raises(SystemExit) as error:
        script("stable_diffusion_xl").main(["--model", saved("sdxl"), "--refine"])
    assert error.value.code == 2


@pytest.mark.parametrize(
    "kind, argv", [("ddpm", ["--batch-size", "2"]), ("sd", ["--prompts", "a red cube", "--units", "attentions"])]
)
def test_block_caching_script(saved, tmp_path, kind, argv, capsys):
    rows = script("block_caching").main(
        [
            "--model",
            saved(kind),
            *argv,
            "--steps",
            "4",
            "--deltas",
            "0",
            "100",
            "--repeats",
            "1",
            "--profile-seeds",
            "1",
            "--output-dir",
            str(tmp_path),
        ]
    )
    exact, cached = rows
    progress = capsys.readouterr().err
    assert "profiling (uncached)" in progress and "4/4" in progress  # one bar per phase
    assert "timing baseline and 2 schedules" in progress and "12/12" in progress
    assert exact["flop_fraction"] == 1 and exact["psnr"] == 100 and exact["mean_recomputes"] == 4  # delta 0: uncached
    assert cached["flop_fraction"] < 1 and cached["mean_recomputes"] == 1 and cached["psnr"] < 100
    assert deepcache.BlockCacheSchedule.load(tmp_path / "schedule-100.json").recompute == dict.fromkeys(
        cached_units(tmp_path), (0,)
    )
    assert "| 100 | 1.0 |" in (tmp_path / "results.md").read_text()
    assert Image.open(tmp_path / "profile.png").size[0] > 500 and (tmp_path / "samples.png").exists()


def cached_units(directory):
    return deepcache.BlockCacheProfile.load(directory / "profile.json").units
