"""Fidelity of cached samples to the uncached ones from the same noise: what the tuner optimises.

Images are float tensors (N, C, H, W) in [0, 1]. Computed by torchmetrics.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

PSNR_CAP = 100.0  # dB; identical images score this instead of infinity, so means stay finite


def _check_pair(reference: torch.Tensor, candidate: torch.Tensor) -> None:
    if reference.shape != candidate.shape or reference.ndim != 4:
        raise ValueError(
            f"`reference` and `candidate` must be image batches (N, C, H, W) of one shape, "
            f"but got {tuple(reference.shape)} and {tuple(candidate.shape)}."
        )


def psnr(reference: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each candidate against its reference (images in [0, 1]); shape (N,)."""
    _check_pair(reference, candidate)
    return peak_signal_noise_ratio(candidate, reference, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(reference: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """SSIM of each candidate against its reference (images in [0, 1]); shape (N,)."""
    _check_pair(reference, candidate)
    return structural_similarity_index_measure(candidate, reference, data_range=1.0, reduction="none")


def mean_psnr(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """Mean PSNR over the images, each capped at ``PSNR_CAP``."""
    return psnr(reference, candidate).clamp(max=PSNR_CAP).mean().item()


def mean_ssim(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    return ssim(reference, candidate).mean().item()
