import pytest
from PIL import Image

from deepcache.__main__ import main as demo
from deepcache.flops import SD15_CONFIG, ideal_speedup, meta_unet_and_inputs, step_flops


def test_cached_step_flops_on_the_real_sd15_config_match_the_published_shares():
    unet, args, kwargs = meta_unet_and_inputs(SD15_CONFIG)
    shares = []
    for branch in range(4):
        full, cached = step_flops(unet, args, kwargs, branch)
        shares.append(round(100 * cached / full, 1))
    assert full == pytest.approx(1606.5e9, rel=1e-3)  # attention included
    assert shares == [7.9, 22.4, 38.0, 47.0]  # REFERENCE.md section 2


def test_ideal_speedup():
    assert ideal_speedup(full=100, cached=10, num_steps=6, num_full_steps=2) == 600 / (200 + 4 * 10)
    assert ideal_speedup(full=100, cached=10, num_steps=6, num_full_steps=6) == 1.0


def test_demo_runs_offline_and_saves_a_grid(tmp_path, capsys):
    output = tmp_path / "grid.png"
    demo(["--steps", "4", "--repeats", "1", "--output", str(output)])
    printed = capsys.readouterr().out
    assert "speedup" in printed and "PSNR" in printed
    assert Image.open(output).size == (2 * 32 * 4, 2 * 32 * 4)  # 2 images wide, baseline over DeepCache
