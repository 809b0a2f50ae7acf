"""Models shipped inside the package, trained here, for measuring speed and quality with no download: a
digits DDPM (``embedded_model_path()``), its classifier, and the captioned-emoji data builder (``.emoji``).
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
