import pytest
from PIL import Image

from deepcache.__main__ import main as demo
from deepcache.evaluation.benchmark import branch_flops
from deepcache.measurement import ideal_speedup


def test_cached_step_flops_on_the_real_sd15_config_match_the_published_shares():
    flops = branch_flops("sd1.5", range(4))
    shares = [round(100 * cached / full, 1) for full, cached in flops.values()]
    assert flops[0][0] == pytest.approx(1606.5e9, rel=1e-3)  # attention included
    assert shares == [7.9, 22.4, 38.0, 47.0]  # REFERENCE.md section 2


def test_ideal_speedup():
    assert ideal_speedup(full=100, cached=10, num_steps=6, num_full_steps=2) == 600 / (200 + 4 * 10)
    assert ideal_speedup(full=100, cached=10, num_steps=6, num_full_steps=6) == 1.0


def test_demo_generates_with_the_embedded_text_to_image_model_offline_and_saves_a_captioned_grid(tmp_path, capsys):
    output = tmp_path / "grid.png"
    demo(["--steps", "4", "--prompt", "red apple", "--prompt", "rocket", "--repeats", "1", "--output", str(output)])
    captured = capsys.readouterr()
    printed = captured.out
    assert (
        "1 runs each, interleaved" in captured.err and "10/10" in captured.err
    )  # U-Net calls: PLMS makes 5 of 4 steps
    assert "embedded emoji text-to-image model" in printed and "2 prompts, 4 PNDM steps, guidance" in printed
    assert (
        "interval 5, branch 1, non-uniform (pow 1.4, center 0.3 T)" in printed
    )  # DeepCacheStableDiffusionPipeline's defaults
    assert "speedup" in printed and "PSNR" in printed and "SSIM" in printed
    header = 4 + 11  # one line of captions
    assert Image.open(output).size == (2 * 96, header + 3 * (96 + 14))  # baseline, DeepCache, difference rows


def test_demo_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        demo(["--steps", "0"])
    assert "--repeats and --steps must be at least 1" in capsys.readouterr().err
