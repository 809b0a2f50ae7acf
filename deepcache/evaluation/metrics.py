"""Quality metrics for cached samples, computed by torchmetrics.

Fidelity (does caching change the picture?): ``psnr`` and ``ssim`` of each cached sample against the
uncached sample from the same noise. Distribution quality (are the pictures still good?): Frechet
distance and KID on any feature extractor; ``digit_features()`` and ``emoji_features()`` are the
embedded classifiers, which need no download. Prompt following: ``emoji_text_score`` (the embedded
contrastive scorer, a CLIP-score analogue), ``emoji_category_accuracy`` and ``colour_word_accuracy``.
``inception_fid`` and ``clip_score`` are for users who have those weights.
Images are float tensors (N, C, H, W) in [0, 1] unless said otherwise.
"""

from __future__ import annotations

import warnings

import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from ..measurement.fidelity import psnr, ssim  # noqa: F401


class _Features(torch.nn.Module):
    """Adapts ``extract(images) -> (N, D)`` to torchmetrics' feature-extractor protocol."""

    def __init__(self, extract, num_features: int):
        super().__init__()
        self.extract = extract
        self.num_features = num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.extract(images)


def digit_features() -> _Features:
    """The embedded digit classifier's 64 penultimate features; takes images in [0, 1]."""
    from ..embedded import load_classifier

    classifier = load_classifier()
    return _Features(lambda images: classifier.features(images * 2 - 1), classifier.num_features)


def emoji_features() -> _Features:
    """The embedded emoji classifier's 128 penultimate features; takes RGB images in [0, 1]."""
    from ..embedded.emoji_judges import load_emoji_classifier

    classifier = load_emoji_classifier()
    return _Features(lambda images: classifier.features(images * 2 - 1), classifier.num_features)


def emoji_text_score(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """The embedded scorer's 100 x max(cosine, 0) of each image in [0, 1] with its prompt; shape (N,)."""
    from ..embedded.emoji_judges import load_emoji_text_scorer

    with torch.no_grad():
        return load_emoji_text_scorer().score(images * 2 - 1, prompts)


def emoji_category_accuracy(images: torch.Tensor, subgroups: list[str]) -> dict[str, float]:
    """Share of images in [0, 1] that the embedded classifier puts in the given CLDR subgroup, and group."""
    from ..embedded.emoji_judges import load_emoji_classifier

    classifier = load_emoji_classifier()
    if len(images) != len(subgroups):
        raise ValueError(f"`images` and `subgroups` must pair up, but got {len(images)} and {len(subgroups)}.")
    unknown = sorted(set(subgroups) - set(classifier.subgroups))
    if unknown:
        raise ValueError(f"`subgroups` must be CLDR subgroups the classifier knows, but got {unknown[:3]}.")
    return classifier.accuracy(images * 2 - 1, torch.tensor([classifier.subgroups.index(s) for s in subgroups]))


# The colour words of the emoji captions ("red heart", "blue circle", ...) and each one's mean non-white RGB in
# the training renderings of its heart, circle and square (Noto Color Emoji at 32 px).
COLOUR_WORDS = {
    "red": (0.94, 0.29, 0.25),
    "orange": (0.99, 0.60, 0.06),
    "yellow": (0.99, 0.79, 0.22),
    "green": (0.50, 0.71, 0.29),
    "blue": (0.14, 0.47, 0.81),
    "purple": (0.67, 0.30, 0.74),
    "brown": (0.72, 0.45, 0.35),
}


def colour_word_accuracy(images: torch.Tensor, colours: list[str], white: float = 0.9) -> float:
    """Share of images in [0, 1] whose mean colour, over pixels that are not near-white background, is nearer
    the named colour of ``COLOUR_WORDS`` than any other: does the model bind colour words?"""
    if len(images) != len(colours):
        raise ValueError(f"`images` and `colours` must pair up, but got {len(images)} and {len(colours)}.")
    unknown = sorted(set(colours) - set(COLOUR_WORDS))
    if unknown:
        raise ValueError(f"`colours` must be among {list(COLOUR_WORDS)}, but got {unknown}.")
    references = torch.tensor(list(COLOUR_WORDS.values()))
    names = list(COLOUR_WORDS)
    right = 0
    for image, colour in zip(images, colours):
        pixels = image.flatten(1).T
        foreground = pixels[(pixels < white).any(dim=1)]
        mean = (foreground if len(foreground) else pixels).mean(dim=0)
        right += names[(references - mean).norm(dim=1).argmin().item()] == colour
    return right / len(images)


class FeatureDistances:
    """Frechet distance and KID of image sets to one reference set, on one feature extractor.

    The reference features are computed once; ``distances(images)`` then scores any number of sets.
    """

    def __init__(
        self, reference: torch.Tensor, features: torch.nn.Module, kid_subset_size: int = 100, batch_size: int = 256
    ):
        if kid_subset_size < 2:
            raise ValueError(f"`kid_subset_size` must be at least 2, but got {kid_subset_size}.")
        self.batch_size = batch_size
        self.kid_subset_size = kid_subset_size
        # sync_on_compute=False: under torch.distributed torchmetrics would gather every process's
        # features at compute(), but here one process scores sets it already holds whole.
        self._fd = FrechetInceptionDistance(feature=features, reset_real_features=False, sync_on_compute=False)
        with warnings.catch_warnings():  # its warning that it keeps all features: that is intended here
            warnings.simplefilter("ignore", UserWarning)
            self._kid = KernelInceptionDistance(
                feature=features, subset_size=kid_subset_size, reset_real_features=False, sync_on_compute=False
            )
        self._update(reference, real=True)

    def _update(self, images: torch.Tensor, real: bool) -> None:
        with torch.no_grad():
            for batch in images.split(self.batch_size):
                self._fd.update(batch, real=real)
                self._kid.update(batch, real=real)

    def distances(self, images: torch.Tensor) -> dict[str, float]:
        """``{"fd", "kid", "kid_std"}`` of ``images`` to the reference set."""
        if len(images) < self.kid_subset_size:
            raise ValueError(
                f"`images` needs at least kid_subset_size={self.kid_subset_size} samples, but got {len(images)}."
            )
        self._fd.reset()
        self._kid.reset()
        self._update(images, real=False)
        with torch.random.fork_rng():  # KID draws random subsets: the same ones every time
            torch.manual_seed(0)
            kid_mean, kid_std = self._kid.compute()
        return {"fd": self._fd.compute().item(), "kid": kid_mean.item(), "kid_std": kid_std.item()}


def inception_fid(reference: torch.Tensor, candidate: torch.Tensor, features: torch.nn.Module | None = None) -> float:
    """FID on Inception-v3 pool features (``pip install 'deepcache[metrics]'``; downloads its weights once).

    ``features`` replaces Inception by any extractor with the same protocol (used by the tests).
    RGB images in [0, 1]; grayscale ones are repeated to three channels.
    """

    def rgb(images: torch.Tensor) -> torch.Tensor:
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    metric = FrechetInceptionDistance(
        feature=features if features is not None else 2048, normalize=True, sync_on_compute=False
    )
    with torch.no_grad():
        metric.update(rgb(reference), real=True)
        metric.update(rgb(candidate), real=False)
    return metric.compute().item()


def clip_score(images: torch.Tensor, prompts: list[str], model: str = "openai/clip-vit-large-patch14") -> float:
    """Mean CLIP score, 100 x max(cosine, 0) as in the paper, of images in [0, 1] and their prompts.

    ``model`` is a hub id or a local folder holding a ``CLIPModel`` and its ``CLIPProcessor``.
    Computed with transformers directly: torchmetrics 1.9's ``CLIPScore`` fails on transformers 5,
    whose ``get_image_features`` returns an output object instead of a tensor.
    """
    if len(images) != len(prompts):
        raise ValueError(
            f"`images` and `prompts` must have one prompt per image, but got {len(images)} and {len(prompts)}."
        )
    from transformers import CLIPModel, CLIPProcessor

    clip, processor = CLIPModel.from_pretrained(model).eval(), CLIPProcessor.from_pretrained(model)
    pixels = list((images * 255).round().to(torch.uint8))
    inputs = processor(text=prompts, images=pixels, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        outputs = clip(**inputs)  # image_embeds and text_embeds come out L2-normalized
    return (100 * (outputs.image_embeds * outputs.text_embeds).sum(-1)).clamp(min=0).mean().item()


def emoji_prompt_following(pipe, samples: int = 64, batch_size: int = 32, **call_kwargs) -> dict[str, float]:
    """How well a text-to-image pipeline on the emoji vocabulary follows its prompts, by the embedded judges:
    colour words (each colour's heart, circle and square, 4 seeds each), and the CLDR subgroup and group
    accuracy and text score on ``samples`` training captions and on ``samples`` held-out captions (emoji the
    model never saw). ``call_kwargs`` go to every pipeline call (steps, guidance, ...)."""
    from ..embedded.emoji import load_catalog
    from .parallel import sample_images

    emoji, held_out = load_catalog()
    order = torch.randperm(len(emoji), generator=torch.Generator().manual_seed(0)).tolist()
    result = {}
    colour_prompts = [f"{c} {shape}" for c in COLOUR_WORDS for shape in ("heart", "circle", "square")] * 4
    images = sample_images(pipe, list(range(len(colour_prompts))), batch_size, colour_prompts, **call_kwargs)
    result["colour_words"] = colour_word_accuracy(images, [p.split()[0] for p in colour_prompts])
    for split, wanted in (("training", False), ("held_out", True)):
        chosen = [emoji[i] for i in order if held_out[i] == wanted][:samples]
        prompts = [e.name for e in chosen]
        images = sample_images(pipe, list(range(len(prompts))), batch_size, prompts, **call_kwargs)
        accuracy = emoji_category_accuracy(images, [e.subgroup for e in chosen])
        result[f"{split}_subgroup"], result[f"{split}_group"] = accuracy["subgroup"], accuracy["group"]
        result[f"{split}_text_score"] = emoji_text_score(images, prompts).mean().item()
    return result
