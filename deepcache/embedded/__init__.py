"""Models shipped inside the package, trained here, for measuring speed and quality with no download:
a small DDPM on handwritten digits (``embedded_model_path()``) and the classifier that judges it.
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
