"""The model shipped inside the package: a small DDPM trained on handwritten digits, and its judge.

Nothing here downloads. ``embedded_model_path()`` is a diffusers pipeline folder that
``DeepCacheDDPMPipeline.from_pretrained`` loads; ``load_classifier()`` is a small CNN trained on the
same images whose penultimate features stand in for Inception's in Frechet distance and KID.
Both were trained by ``scripts/train_embedded.py``; its seed and settings are in ``training.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

DATA_DIR = Path(__file__).parent / "data"
MODEL_DIR = DATA_DIR / "digits-ddpm"
CLASSIFIER_DIR = DATA_DIR / "digits-classifier"
IMAGE_SIZE = 32

# The U-Net follows the CIFAR-10 DDPM's shape at a smaller width: 32x32, four resolution levels,
# two layers per block, self-attention at 16x16.
UNET_CONFIG = dict(
    sample_size=IMAGE_SIZE,
    in_channels=1,
    out_channels=1,
    layers_per_block=2,
    block_out_channels=(32, 64, 64, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=32,
    norm_num_groups=16,
)


def embedded_model_path() -> str:
    """Folder of the shipped digits DDPM, for ``DeepCacheDDPMPipeline.from_pretrained``."""
    if not (MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(f"The embedded model is missing from {MODEL_DIR}; run scripts/train_embedded.py.")
    return str(MODEL_DIR)


def load_digits(size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits (8x8, shipped with scikit-learn), upsampled to ``size``.

    Returns images in [-1, 1] with shape (N, 1, size, size) and their labels.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError("The digits dataset needs scikit-learn: pip install 'deepcache[research]'.") from error
    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1) * 2 - 1, torch.tensor(digits.target)


class DigitClassifier(torch.nn.Module):
    """A small CNN for 32x32 digits in [-1, 1]; ``features`` gives its penultimate activations."""

    def __init__(self, width: int = 32, num_features: int = 64, num_classes: int = 10, feature_scale: float = 1.0):
        super().__init__()
        self.config = dict(width=width, num_features=num_features, num_classes=num_classes, feature_scale=feature_scale)
        self.num_features = num_features
        # Features are scaled to unit standard deviation on the training digits: KID's polynomial
        # kernel assumes features of order one, as Inception's are.
        self.feature_scale = feature_scale
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, width, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(width, 2 * width, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(8 * width, num_features),
            torch.nn.SiLU(),
        )
        self.head = torch.nn.Linear(num_features, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images) * self.feature_scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), directory / "model.safetensors")
        (directory / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> DigitClassifier:
        directory = Path(directory)
        model = cls(**json.loads((directory / "config.json").read_text()))
        model.load_state_dict(load_file(directory / "model.safetensors"))
        return model.eval()


def load_classifier() -> DigitClassifier:
    """The shipped digit classifier, in eval mode."""
    if not (CLASSIFIER_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"The embedded classifier is missing from {CLASSIFIER_DIR}; run scripts/train_embedded.py."
        )
    return DigitClassifier.load(CLASSIFIER_DIR)
