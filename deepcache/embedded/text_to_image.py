"""The shipped text-to-image model: a small Stable Diffusion trained on captioned emoji.

``embedded_text_to_image_path()`` is a diffusers folder in Stable Diffusion's layout (tokenizer,
text_encoder, vae, unet, scheduler) that ``StableDiffusionPipeline.from_pretrained`` and
``DeepCacheStableDiffusionPipeline.from_pretrained`` load offline. Everything in it was trained here by
``scripts/train_embedded.py`` on the emoji of ``.emoji``: the CLIP tokenizer's vocabulary is the caption
words, the autoencoder is f=2 (32x32 RGB <-> 16x16x4 latents), the U-Net has SD's shape (four levels,
cross-attention in three of them and in the mid block) at a smaller width.
"""

from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path

from .digits import DATA_DIR

MODEL_DIR = DATA_DIR / "emoji-sd"
IMAGE_SIZE = 32
MAX_TOKENS = 32  # the longest caption ("couple with heart: woman, woman, ...") is 21 tokens with its markers

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=16,
    sample_size=IMAGE_SIZE,
)

# SD 1.5's layout (cross-attention down blocks at the three finest levels, a plain one at the coarsest,
# the mirror on the way up, a cross-attention mid block) at one layer per block and widths 32-128.
UNET_CONFIG = dict(
    sample_size=IMAGE_SIZE // 2,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(32, 64, 96, 128),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=128,
    attention_head_dim=8,
    norm_num_groups=16,
)

TEXT_ENCODER_CONFIG = dict(
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=MAX_TOKENS,
    projection_dim=128,
)

# Stable Diffusion's PNDM settings (scaled-linear betas from 0.00085 to 0.012 over 1000 steps); DDIM,
# DPM-Solver++ and UniPC take the same config through ``from_config``. PNDM ignores ``clip_sample`` but
# keeps it, as SD's config does, so that DDIM does not clip latents to [-1, 1] (its default would).
# The saved file holds exactly these keys, as SD 1.5's published scheduler_config.json does: it names
# no ``timestep_spacing``, so a solver made with ``from_config`` uses its own default spacing, as on SD
# (DPM-Solver++, UniPC, Euler: "linspace"; DDIM, PNDM: "leading"). A file naming "leading" (what
# ``save_pretrained`` writes) makes DPM-Solver++ and UniPC start a 200-step run at t = 801, 25 steps at 951.
SCHEDULER_CONFIG = dict(
    clip_sample=False,
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
)


def embedded_text_to_image_path() -> str:
    """Folder of the shipped emoji text-to-image model, for ``(DeepCache)StableDiffusionPipeline.from_pretrained``."""
    if not (MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            f"The embedded text-to-image model is missing from {MODEL_DIR}; run scripts/train_embedded.py "
            "text-to-image."
        )
    return str(MODEL_DIR)


def _byte_alphabet() -> list[str]:
    """CLIP's ``bytes_to_unicode`` characters: every byte has a printable stand-in."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    extra = (256 + n for n in range(256 - len(printable)))
    return [chr(c) for c in printable] + [chr(c) for c in extra]


def build_clip_tokenizer(captions: list[str], directory: str | Path | None = None):
    """A ``CLIPTokenizer`` whose BPE merges spell every word of ``captions`` as one token.

    Words are split the way CLIP splits them (lower case; letters, digits and punctuation apart), so any
    other text still tokenizes, byte by byte. Written as vocab.json and merges.txt into ``directory``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    directory = Path(directory or tempfile.mkdtemp(prefix="deepcache-clip-tokenizer-"))
    directory.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    special = ["<|startoftext|>", "<|endoftext|>"]
    # A merge-less CLIP tokenizer does CLIP's normalisation and word splitting for us.
    (directory / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(special + alphabet + [c + "</w>" for c in alphabet])})
    )
    (directory / "merges.txt").write_text("#version: 0.2\n")
    characters = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
    words: collections.Counter[str] = collections.Counter()
    for caption in captions:
        word = ""
        for piece in characters.tokenize(caption):
            if piece.endswith("</w>"):
                words[word + piece[: -len("</w>")]] += 1
                word = ""
            else:
                word += piece

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=1_000_000,  # never the limit: merging stops when every word is one token
        min_frequency=1,
        special_tokens=special,
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator((" ".join([word] * count) for word, count in sorted(words.items())), trainer)
    vocab = bpe.get_vocab()
    for character in alphabet:  # single bytes at a word's end, so unseen words still encode
        vocab.setdefault(character + "</w>", len(vocab))
    merges = json.loads(bpe.to_str())["model"]["merges"]
    (directory / "vocab.json").write_text(json.dumps(dict(sorted(vocab.items(), key=lambda item: item[1]))))
    (directory / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(" ".join(m if isinstance(m, list) else m.split()) + "\n" for m in merges)
    )
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=MAX_TOKENS)
    tokenizer.save_pretrained(directory)
    return tokenizer
