"""The bundled sample images, and which model each one suits.

VGG-16 gets natural photographs (public domain / CC0, see assets/samples/LICENSE.md);
the Fashion-MNIST CNN gets garments drawn by scripts/make_samples.py: some already in
the data set's style (light on black, 28x28) and some as "product photos" (dark on
white) that the photo-to-Fashion-MNIST pipeline has to convert first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.base.paths import ASSETS

SAMPLES_DIR = ASSETS / "samples"


@dataclass(frozen=True)
class Sample:
    name: str  # file name, unique: also a stable widget value
    path: Path
    caption: str


_CATALOGUE: dict[str, tuple[tuple[str, str], ...]] = {
    "imagenet": (
        ("photo_cat.jpg", "Cat (Chelsea, CC0)"),
        ("photo_coffee.jpg", "Cup of coffee (CC0)"),
        ("photo_rocket.jpg", "Rocket launch (public domain)"),
        ("photo_astronaut.jpg", "Astronaut (NASA, public domain)"),
    ),
    "fashion_cnn": (
        ("fashion_tshirt.png", "T-shirt, drawn in Fashion-MNIST style"),
        ("fashion_trouser.png", "Trousers, drawn in Fashion-MNIST style"),
        ("fashion_dress.png", "Dress, drawn in Fashion-MNIST style"),
        ("fashion_sneaker.png", "Sneaker, drawn in Fashion-MNIST style"),
        ("fashion_ankle_boot.png", "Ankle boot, drawn in Fashion-MNIST style"),
        ("fashion_bag.png", "Bag, drawn in Fashion-MNIST style"),
        ("product_tshirt.jpg", "T-shirt as a product photo (dark on white)"),
        ("product_sneaker.jpg", "Sneaker as a product photo (dark on white)"),
    ),
}


def samples(model_name: str) -> list[Sample]:
    """The samples that make sense for `model_name`, in display order: garments for the
    Fashion-MNIST CNN, photographs for every ImageNet model (shipped or configured)."""
    from app.networks.models import model_names  # the registry reads the teacher's config

    if model_name == "fashion_cnn":
        catalogue = _CATALOGUE["fashion_cnn"]
    elif model_name in model_names():
        catalogue = _CATALOGUE["imagenet"]
    else:
        raise KeyError(f"no samples for model {model_name!r}; known: {', '.join(model_names())}")
    return [Sample(name, SAMPLES_DIR / name, caption) for name, caption in catalogue]


def sample_bytes(sample: Sample) -> bytes:
    """The file's bytes, so a sample goes through the same `load_image` path as an upload."""
    return sample.path.read_bytes()
