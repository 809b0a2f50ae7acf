"""Quality metrics on inputs whose answers are known, and the shipped classifier that feeds them."""

import math

import pytest
import torch

from deepcache.evaluation.metrics import (
    COLOUR_WORDS,
    FeatureDistances,
    clip_score,
    colour_word_accuracy,
    digit_features,
    inception_fid,
    psnr,
    ssim,
)


class Flatten(torch.nn.Module):
    """Features = the pixels themselves, so distances have closed forms."""

    num_features = 4

    def forward(self, images):
        return images.flatten(1).double()


def images(n, seed=0):
    return torch.rand(n, 1, 2, 2, generator=torch.Generator().manual_seed(seed))


def test_psnr_and_ssim_of_known_pairs():
    reference = torch.full((2, 1, 16, 16), 0.5)
    assert torch.allclose(psnr(reference, reference + 0.1), torch.tensor([20.0, 20.0]), atol=1e-4)  # MSE 0.01
    assert torch.isinf(psnr(reference, reference)).all()
    noisy = (reference + 0.2 * torch.rand(reference.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert torch.allclose(ssim(reference, reference), torch.ones(2))
    assert (ssim(reference, noisy) < 0.9).all()


def test_pair_metrics_reject_mismatched_batches():
    with pytest.raises(ValueError, match="`reference` and `candidate` must be image batches"):
        psnr(torch.rand(2, 1, 8, 8), torch.rand(3, 1, 8, 8))


def test_identical_sets_give_zero_fd_and_kid():
    reference = images(300)
    scores = FeatureDistances(reference, Flatten(), kid_subset_size=50).distances(reference)
    assert abs(scores["fd"]) < 1e-6
    assert abs(scores["kid"]) < 0.01


def test_fd_of_a_shifted_set_is_the_squared_shift():
    """Equal covariances: FD = |mean difference|^2, here 4 features shifted by 0.5 each = 1.0."""
    reference = images(300)
    distances = FeatureDistances(reference, Flatten(), kid_subset_size=50)
    assert distances.distances(reference + 0.5)["fd"] == pytest.approx(1.0, abs=1e-4)
    assert distances.distances(reference + 0.5)["kid"] > 0.1
    with pytest.raises(ValueError, match="at least kid_subset_size=50"):
        distances.distances(reference[:10])


class FlattenRGB(Flatten):
    num_features = 12


def test_inception_fid_takes_a_stand_in_extractor():
    """Grayscale is repeated to RGB: 12 features shifted by 0.25 each."""
    reference = images(100)
    assert inception_fid(reference, reference + 0.25, features=FlattenRGB()) == pytest.approx(12 * 0.25**2, abs=1e-4)


def test_clip_score_loads_a_local_clip_and_matches_its_cosine(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from deepcache.testing import tiny_clip_tokenizer

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=1000,
            max_position_embeddings=77,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=8,
    )
    model = CLIPModel(config).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32), tokenizer=tiny_clip_tokenizer()
    )
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    pictures = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    prompts = ["a red cube", "a lighthouse"]

    score = clip_score(pictures, prompts, model=str(tmp_path))

    inputs = processor(
        text=prompts, images=list((pictures * 255).round().to(torch.uint8)), return_tensors="pt", padding=True
    )
    with torch.no_grad():  # the towers and projections by hand
        image = model.visual_projection(model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output)
        text = model.text_projection(
            model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output
        )
        image, text = (torch.nn.functional.normalize(x, dim=-1) for x in (image, text))
    expected = (100 * (image * text).sum(-1)).clamp(min=0).mean().item()
    assert score > 0 and score == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="one prompt per image"):
        clip_score(pictures, prompts[:1], model=str(tmp_path))


def test_the_shipped_classifier_recognises_real_digits():
    from deepcache.embedded import load_classifier, load_digits

    digits, labels = load_digits()
    classifier = load_classifier()
    accuracy = (classifier(digits).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.97
    features = digit_features()((digits[:500] + 1) / 2)
    assert features.shape == (500, 64)
    assert math.isclose(features.std(0).mean().item(), 1.0, rel_tol=0.15)  # scaled for KID


def test_colour_words_are_read_from_the_foreground_colour():
    """A shape of each reference colour on white is read as that colour; the white background does not count."""
    images = torch.ones(len(COLOUR_WORDS), 3, 32, 32)
    for image, rgb in zip(images, COLOUR_WORDS.values()):
        image[:, 8:20, 8:24] = torch.tensor(rgb).view(3, 1, 1) * 0.97  # a little darker: still nearest its own
    names = list(COLOUR_WORDS)
    assert colour_word_accuracy(images, names) == 1.0
    assert colour_word_accuracy(images, names[1:] + names[:1]) == 0.0
    assert colour_word_accuracy(images[:2], ["red", "red"]) == 0.5
    with pytest.raises(ValueError, match="`colours` must be among"):
        colour_word_accuracy(images[:1], ["teal"])
    with pytest.raises(ValueError, match="`images` and `colours` must pair up"):
        colour_word_accuracy(images, ["red"])
