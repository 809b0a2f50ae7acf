import pytest
from PIL import Image

from deepcache.__main__ import main as demo
from deepcache.evaluation.benchmark import branch_flops
from deepcache.models.flops import ideal_speedup


def test_cached_step_flops_on_the_real_sd15_config_match_the_published_shares():
    flops = branch_flops("sd1.5", range(4))
    shares = [round(100 * cached / full, 1) for full, cached in flops.values()]
    assert flops[0][0] == pytest.approx(1606.5e9, rel=1e-3)  # attention included
    assert shares == [7.9, 22.4, 38.0, 47.0]  # REFERENCE.md section 2


def test_ideal_speedup():
    assert ideal_speedup(full=100, cached=10, num_steps=6, num_full_steps=2) == 600 / (200 + 4 * 10)
    assert ideal_speedup(full=100, cached=10, num_steps=6, num_full_steps=6) == 1.0


def test_demo_samples_the_embedded_model_offline_and_saves_a_grid(tmp_path, capsys):
    output = tmp_path / "grid.png"
    demo(["--steps", "4", "--images", "2", "--repeats", "1", "--output", str(output)])
    captured = capsys.readouterr()
    printed = captured.out
    assert "1 runs each, interleaved" in captured.err and "8/8" in captured.err  # a progress bar over the U-Net steps
    assert "embedded digits DDPM" in printed
    assert "interval 5, branch 2, uniform" in printed  # DeepCacheDDPMPipeline's defaults
    assert "speedup" in printed and "PSNR" in printed and "SSIM" in printed
    assert Image.open(output).size == (2 * 128, 3 * (128 + 14))  # baseline, DeepCache, difference rows
