"""Judges of the emoji text-to-image model, trained here on the same images and captions.

``EmojiClassifier`` names an image's CLDR subgroup (and so its group); its penultimate features stand
in for Inception's in Frechet distance and KID. ``EmojiTextScorer`` is a small contrastive image-text
model (CLIP's objective, its own word vocabulary) whose cosine similarity gives a CLIP-score analogue.
Both take 32x32 RGB images in [-1, 1] and were trained by ``scripts/train_embedded.py judges``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .digits import DATA_DIR

JUDGES_DIR = DATA_DIR / "emoji-judges"


def _image_body(width: int, num_features: int) -> torch.nn.Sequential:
    """A small CNN, 32x32x3 -> ``num_features``."""

    def stage(inputs: int, outputs: int) -> list[torch.nn.Module]:
        return [
            torch.nn.Conv2d(inputs, outputs, 3, padding=1),
            torch.nn.GroupNorm(8, outputs),
            torch.nn.SiLU(),
            torch.nn.Conv2d(outputs, outputs, 3, padding=1),
            torch.nn.GroupNorm(8, outputs),
            torch.nn.SiLU(),
        ]

    return torch.nn.Sequential(
        *stage(3, width),
        torch.nn.MaxPool2d(2),
        *stage(width, 2 * width),
        torch.nn.MaxPool2d(2),
        *stage(2 * width, 4 * width),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * width, num_features),
        torch.nn.SiLU(),
    )


class _Saved(torch.nn.Module):
    """Save and load as config.json plus model.safetensors."""

    config: dict

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), directory / "model.safetensors")
        (directory / "config.json").write_text(json.dumps(self.config, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, directory: str | Path):
        directory = Path(directory)
        if not (directory / "model.safetensors").is_file():
            raise FileNotFoundError(f"No {cls.__name__} in {directory}; run scripts/train_embedded.py judges.")
        model = cls(**json.loads((directory / "config.json").read_text(encoding="utf-8")))
        model.load_state_dict(load_file(directory / "model.safetensors"))
        return model.eval()


class EmojiClassifier(_Saved):
    """Predicts an emoji's CLDR subgroup; ``features`` gives its penultimate activations."""

    def __init__(
        self,
        subgroups: list[str],
        groups: list[str],
        width: int = 32,
        num_features: int = 128,
        feature_scale: float = 1.0,
    ):
        super().__init__()
        if len(groups) != len(subgroups):
            raise ValueError(f"`groups` needs one group per subgroup, but got {len(groups)} for {len(subgroups)}.")
        self.config = dict(
            subgroups=list(subgroups),
            groups=list(groups),
            width=width,
            num_features=num_features,
            feature_scale=feature_scale,
        )
        self.subgroups, self.groups = list(subgroups), list(groups)
        self.num_features = num_features
        self.feature_scale = feature_scale  # unit standard deviation on the training images, as KID assumes
        self.body = _image_body(width, num_features)
        self.head = torch.nn.Linear(num_features, len(subgroups))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images) * self.feature_scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Subgroup logits."""
        return self.head(self.body(images))

    def group_of(self, subgroup_indices: torch.Tensor) -> list[str]:
        return [self.groups[i] for i in subgroup_indices.tolist()]

    @torch.no_grad()
    def accuracy(self, images: torch.Tensor, subgroup_indices: torch.Tensor) -> dict[str, float]:
        """Shares of ``images`` (in [-1, 1]) put in their given subgroup, and in its group."""
        predicted = self(images).argmax(1)
        same_group = [a == b for a, b in zip(self.group_of(predicted), self.group_of(subgroup_indices))]
        return {
            "subgroup": (predicted == subgroup_indices).sum().item() / len(same_group),
            "group": sum(same_group) / len(same_group),
        }


def caption_words(caption: str) -> list[str]:
    return re.findall(r"\w+", caption.lower())


class EmojiTextScorer(_Saved):
    """Image and caption embeddings trained contrastively; ``score`` is 100 x max(cosine, 0), as CLIP score."""

    def __init__(self, words: list[str], width: int = 32, dim: int = 128):
        super().__init__()
        self.config = dict(words=list(words), width=width, dim=dim)
        self.index = {word: i + 1 for i, word in enumerate(words)}  # 0: a word it never saw
        self.image = _image_body(width, dim)
        self.image_projection = torch.nn.Linear(dim, dim)
        self.word_embeddings = torch.nn.EmbeddingBag(len(words) + 1, dim, mode="mean")
        self.text = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.SiLU(), torch.nn.Linear(dim, dim))
        self.log_temperature = torch.nn.Parameter(torch.tensor(2.659))  # CLIP's initial 1/0.07

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_projection(self.image(images)), dim=-1)

    def embed_captions(self, captions: list[str]) -> torch.Tensor:
        ids = [torch.tensor([self.index.get(w, 0) for w in caption_words(c)] or [0]) for c in captions]
        offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
        return F.normalize(self.text(self.word_embeddings(torch.cat(ids), offsets)), dim=-1)

    def score(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """Per-pair score, shape (N,)."""
        if len(images) != len(captions):
            raise ValueError(f"`images` and `captions` must pair up, but got {len(images)} and {len(captions)}.")
        return 100 * (self.embed_images(images) * self.embed_captions(captions)).sum(-1).clamp(min=0)

    def logits(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:
        return self.log_temperature.exp() * self.embed_images(images) @ self.embed_captions(captions).T


def load_emoji_classifier() -> EmojiClassifier:
    return EmojiClassifier.load(JUDGES_DIR / "classifier")


def load_emoji_text_scorer() -> EmojiTextScorer:
    return EmojiTextScorer.load(JUDGES_DIR / "scorer")
