"""The captioned emoji data builder (deepcache.embedded.emoji); rendering needs Debian's emoji font."""

import numpy as np
import pytest

from deepcache.embedded.emoji import (
    FONT_PATH,
    Emoji,
    build_emoji_data,
    font_version,
    parse_emoji_test,
    render,
    unique_rows,
)

EMOJI_TEST = """\
# Version: 15.0
# group: Smileys & Emotion

# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face

# group: Food & Drink

# subgroup: food-fruit
1F34E                                                  ; fully-qualified     # 🍎 E0.6 red apple
# subgroup: food-vegetable
1F34E                                                  ; fully-qualified     # 🍎 E0.6 red apple again
1F1EF 1F1F5                                            ; fully-qualified     # 🇯🇵 E0.6 flag: Japan
"""

needs_font = pytest.mark.skipif(not FONT_PATH.exists(), reason="apt-get install fonts-noto-color-emoji")


def test_parse_keeps_fully_qualified_emoji_with_their_names_and_categories():
    entries = parse_emoji_test(EMOJI_TEST)
    assert entries[:2] == [
        Emoji("\U0001f600", "grinning face", "Smileys & Emotion", "face-smiling"),
        Emoji("\u263a\ufe0f", "smiling face", "Smileys & Emotion", "face-smiling"),
    ]
    assert [e.name for e in entries] == ["grinning face", "smiling face", "red apple", "red apple again", "flag: Japan"]
    assert entries[3].subgroup == "food-vegetable" and entries[4].text == "\U0001f1ef\U0001f1f5"


def test_unique_rows_drops_byte_identical_images_keeping_the_first():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    images[1, 0, 0, 0] = images[3, 0, 0, 0] = 7
    assert unique_rows(images) == [0, 1]


def test_missing_sources_and_bad_split_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install unicode-data"):
        build_emoji_data(8, emoji_test_path=tmp_path / "none.txt")
    with pytest.raises(FileNotFoundError, match="apt-get install fonts-noto-color-emoji"):
        render([Emoji("a", "a", "", "")], 8, font_path=tmp_path / "none.ttf")
    with pytest.raises(ValueError, match="held_out_share"):
        build_emoji_data(8, held_out_share=1.0)


@needs_font
def test_build_renders_distinct_colour_emoji_and_records_where_they_came_from(tmp_path):
    source = tmp_path / "emoji-test.txt"
    source.write_text(EMOJI_TEST, encoding="utf-8")
    data = build_emoji_data(24, held_out_share=0.25, emoji_test_path=source)
    assert data.images.shape == (4, 24, 24, 3) and data.images.dtype == np.uint8
    assert data.captions == [
        "grinning face",
        "smiling face",
        "red apple",
        "flag: Japan",
    ]  # the second apple is a duplicate
    assert data.held_out.sum() == 1
    assert data.provenance["duplicates_dropped"] == 1 and data.provenance["emoji_test_version"] == "15.0"
    assert data.provenance["font_version"] == font_version(FONT_PATH) and data.provenance["font_version"].startswith(
        "Version "
    )
    apple = data.images[2].reshape(-1, 3).astype(int)
    assert (apple[:, 0] - apple[:, 1] > 100).mean() > 0.2  # mostly red, not a grey glyph
    assert data.images[0, 0, 0].tolist() == [255, 255, 255]  # drawn on white
    again = build_emoji_data(24, held_out_share=0.25, emoji_test_path=source)
    assert np.array_equal(again.images, data.images) and np.array_equal(again.held_out, data.held_out)
