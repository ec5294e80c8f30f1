"""Make the bundled photo set for the "What units look for" page (run: `.venv/bin/python -m scripts.make_photos`).

VGG-16 has no ImageNet here, so a unit's best patches are searched in a small set of
real photos shipped with the app. They come from scikit-image's sample data (a
development-time source only: the app reads the JPEGs in assets/photos/, not
scikit-image), each released without copyright restrictions (see LICENSE.md there).
Each photo is centre-cropped to a square, shrunk to 256x256 and saved as JPEG; the
app makes 20 variants of each (crops, mirror images). The JPEGs are committed; only
re-making them needs scikit-image (`pip install scikit-image==0.26.0`, the version the
licence table in assets/photos/LICENSE.md was checked against), so it is no dependency.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "assets" / "photos"
SIDE = 256
# output name -> scikit-image data file
PHOTOS = {
    "astronaut": "astronaut.png",
    "cat": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "cameraman": "camera.png",
    "coins": "coins.png",
    "galaxies": "hubble_deep_field.jpg",
    "bricks": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
}


def main() -> None:
    import skimage  # development-time only

    source = Path(skimage.__file__).parent / "data"
    OUT.mkdir(parents=True, exist_ok=True)
    for name, file in PHOTOS.items():
        with Image.open(source / file) as f:
            img = f.convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((SIDE, SIDE), Image.Resampling.LANCZOS)
        img.save(OUT / f"{name}.jpg", quality=88)
        print(name, np.asarray(img).mean().round(1))


if __name__ == "__main__":
    main()
