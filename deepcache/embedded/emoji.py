"""Captioned colour emoji rendered offline: the training data of the text-to-image model to come.

Each fully-qualified emoji of Unicode's ``emoji-test.txt`` is drawn with the Noto Color Emoji font and
captioned with its CLDR name ("red apple", "rocket"); its CLDR group and subgroup are the categories a
classifier can be scored on. Both files come from Debian packages (``fonts-noto-color-emoji``,
``unicode-data``): training needs them, the shipped models and their tests do not.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST_PATH = Path("/usr/share/unicode/emoji/emoji-test.txt")
FONT_PIXELS = 109  # the only size Noto Color Emoji's bitmaps come in
CATALOG_PATH = Path(__file__).parent / "data" / "emoji-catalog.json"


@dataclass(frozen=True)
class Emoji:
    """One fully-qualified emoji: its characters, CLDR name, group and subgroup."""

    text: str
    name: str
    group: str
    subgroup: str


@dataclass(frozen=True)
class EmojiData:
    """Rendered emoji, ``images`` uint8 of shape (N, size, size, 3), and where they came from."""

    images: np.ndarray
    emoji: tuple[Emoji, ...]
    held_out: np.ndarray  # bool per image: the split kept out of training
    provenance: dict

    @property
    def captions(self) -> list[str]:
        return [e.name for e in self.emoji]


def parse_emoji_test(text: str) -> list[Emoji]:
    """The fully-qualified emoji listed in an ``emoji-test.txt``, in file order."""
    group = subgroup = ""
    entries = []
    for line in text.splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            codes, rest = line.split(";", 1)
            status, comment = rest.split("#", 1)
            if status.strip() != "fully-qualified":
                continue
            characters = "".join(chr(int(code, 16)) for code in codes.split())
            name = comment.split(maxsplit=2)[2].strip()  # "<emoji> E<version> <name>"
            entries.append(Emoji(characters, name, group, subgroup))
    return entries


def font_version(path: str | Path) -> str:
    """The version string a TrueType font records (``name`` table, ID 5), e.g. ``Version 2.042``."""
    return _name_table_version(Path(path).read_bytes())


def _name_table_version(data: bytes) -> str:
    tables = struct.unpack(">H", data[4:6])[0]
    for index in range(tables):
        tag, _, offset, _ = struct.unpack(">4sIII", data[12 + 16 * index : 28 + 16 * index])
        if tag != b"name":
            continue
        count, strings = struct.unpack(">HH", data[offset + 2 : offset + 6])
        for record in range(count):
            platform, _, _, name_id, length, start = struct.unpack(
                ">HHHHHH", data[offset + 6 + 12 * record : offset + 18 + 12 * record]
            )
            if name_id == 5:
                raw = data[offset + strings + start : offset + strings + start + length]
                return raw.decode("utf-16-be" if platform in (0, 3) else "latin-1")
    return "unknown"


def render(emoji: list[Emoji] | tuple[Emoji, ...], size: int, font_path: str | Path = FONT_PATH) -> np.ndarray:
    """Each emoji drawn on white, cropped to its pixels, centred on a square and resized to ``size``."""
    font = ImageFont.truetype(str(_required(font_path, "fonts-noto-color-emoji")), FONT_PIXELS)
    images = np.empty((len(emoji), size, size, 3), np.uint8)
    for index, entry in enumerate(emoji):
        canvas = Image.new("RGBA", (4 * FONT_PIXELS, 2 * FONT_PIXELS), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((0, 0), entry.text, font=font, embedded_color=True)
        box = canvas.getbbox() or (0, 0, 1, 1)
        glyph = canvas.crop(box)
        side = max(glyph.size)
        square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
        square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
        images[index] = np.asarray(square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
    return images


def build_emoji_data(
    size: int,
    held_out_share: float = 0.1,
    seed: int = 0,
    font_path: str | Path = FONT_PATH,
    emoji_test_path: str | Path = EMOJI_TEST_PATH,
) -> EmojiData:
    """Renders every fully-qualified emoji at ``size``, drops renderings identical to an earlier one, and
    marks a seeded ``held_out_share`` of the rest as held out."""
    if not 0 <= held_out_share < 1:
        raise ValueError(f"`held_out_share` must be in [0, 1), but got {held_out_share}.")
    emoji_test = _required(emoji_test_path, "unicode-data").read_text(encoding="utf-8")
    listed = parse_emoji_test(emoji_test)
    images = render(listed, size, font_path)
    keep = unique_rows(images)
    images, kept = images[keep], tuple(listed[i] for i in keep)
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    held_out = np.zeros(len(kept), bool)
    held_out[order[: round(held_out_share * len(kept))]] = True
    font = Path(font_path).read_bytes()
    provenance = {
        "font": str(font_path),
        "font_version": _name_table_version(font),
        "font_sha256": hashlib.sha256(font).hexdigest(),
        "emoji_test_version": _emoji_test_version(emoji_test),
        "listed": len(listed),
        "duplicates_dropped": len(listed) - len(kept),
        "size": size,
        "held_out_share": held_out_share,
        "seed": seed,
    }
    return EmojiData(images, kept, held_out, provenance)


def save_catalog(data: EmojiData, path: str | Path = CATALOG_PATH) -> None:
    """Write the emoji, their captions, categories and split (no images): what prompts and scores need."""
    rows = [
        dict(text=e.text, name=e.name, group=e.group, subgroup=e.subgroup, held_out=bool(h))
        for e, h in zip(data.emoji, data.held_out)
    ]
    Path(path).write_text(
        json.dumps(dict(provenance=data.provenance, emoji=rows), indent=0, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def load_catalog(path: str | Path = CATALOG_PATH) -> tuple[list[Emoji], list[bool]]:
    """The shipped catalog of the training emoji (no font needed): the emoji, and which were held out."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))["emoji"]
    return [Emoji(r["text"], r["name"], r["group"], r["subgroup"]) for r in rows], [r["held_out"] for r in rows]


def shuffled_training_captions(count: int, offset: int = 0) -> list[str]:
    """``count`` training captions in a seeded random order (``offset`` picks another stretch of it, wrapping):
    the prompts the measuring scripts sample with."""
    import torch

    emoji, held_out = load_catalog()
    captions = [e.name for e, out in zip(emoji, held_out) if not out]
    order = torch.randperm(len(captions), generator=torch.Generator().manual_seed(0)).tolist()
    return [captions[order[(offset + i) % len(order)]] for i in range(count)]


def unique_rows(images: np.ndarray) -> list[int]:
    """Indices of the images that are not byte-identical to an earlier one."""
    seen, keep = set(), []
    for index, image in enumerate(images):
        digest = hashlib.sha256(image.tobytes()).digest()
        if digest not in seen:
            seen.add(digest)
            keep.append(index)
    return keep


def _emoji_test_version(text: str) -> str:
    return next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# Version:")), "unknown"
    )


def _required(path: str | Path, package: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; it comes with Debian's {package} package (apt-get install {package})."
        )
    return path
