"""Measurement the product uses: exact U-Net FLOPs of full and cached steps, Block Caching profiles and calibrated
DeepCache schedules, each measured on the user's own pipeline over uncached runs."""

from .calibration import calibrate_schedule
from .calls import call_generators, input_calls, output_images
from .fidelity import mean_psnr, mean_ssim, psnr, ssim
from .flops import (
    branch_step_flops,
    count_flops,
    ideal_speedup,
    module_flops,
    step_flops,
    unit_flops,
)
from .forecast import calibrate_forecast
from .profiling import profile_blocks
