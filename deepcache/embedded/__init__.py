"""Models shipped inside the package, trained here, for measuring speed and quality with no download: an
emoji text-to-image model (``embedded_text_to_image_path()``) and a digits DDPM, each with its judges.
"""

from .digits import (
    CLASSIFIER_DIR,
    IMAGE_SIZE,
    MODEL_DIR,
    UNET_CONFIG,
    DigitClassifier,
    embedded_model_path,
    load_classifier,
    load_digits,
)
from .emoji_judges import (
    EmojiClassifier,
    EmojiTextScorer,
    load_emoji_classifier,
    load_emoji_text_scorer,
)
from .text_to_image import embedded_text_to_image_path
