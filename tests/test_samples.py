"""Bundled samples: present, licensed, loadable, and (with trained weights) recognised as drawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.networks.images import load_image
from app.networks.models import FASHION_WEIGHTS
from app.networks.samples import SAMPLES_DIR, sample_bytes, samples
from scripts.make_samples import DRAWINGS, PHOTOS, render_drawing, render_photo

MODELS = ("vgg16", "fashion_cnn")
needs_weights = pytest.mark.skipif(not FASHION_WEIGHTS.exists(), reason="models/fashion_cnn.pt not trained yet")


def test_catalogue_and_folder_agree_and_every_file_has_a_licence_line():
    listed = [s.name for m in MODELS for s in samples(m)]
    on_disk = sorted(p.name for p in SAMPLES_DIR.iterdir() if p.name != "LICENSE.md")
    assert sorted(listed) == on_disk and len(set(listed)) == len(listed)
    licence = (SAMPLES_DIR / "LICENSE.md").read_text()
    for name in listed:
        assert f"`{name}`" in licence or name.startswith(("fashion_", "product_"))
    assert "`fashion_*.png`" in licence and "`product_*.jpg`" in licence
    assert sum(p.stat().st_size for p in SAMPLES_DIR.iterdir()) < 1_000_000


def test_imagenet_models_get_photos_and_fashion_gets_garments():
    assert all(s.name.startswith("photo_") for s in samples("vgg16"))
    assert samples("efficientnet_lite0") == samples("vgg16")
    assert all(s.name.startswith(("fashion_", "product_")) for s in samples("fashion_cnn"))
    assert len(samples("vgg16")) >= 3
    with pytest.raises(KeyError):
        samples("resnet")


@pytest.mark.parametrize("sample", [s for m in MODELS for s in samples(m)], ids=lambda s: s.name)
def test_every_sample_loads(sample):
    img = load_image(sample_bytes(sample))
    assert img.mode == "RGB" and min(img.size) >= 28
    if sample.name.startswith("photo_"):
        assert max(img.size) <= 400 and min(img.size) >= 224  # VGG-16 crops 224 px without upscaling much


def test_committed_drawings_match_the_script():
    """The PNGs are exactly what scripts/make_samples.py draws (so the script stays the source)."""
    for name, (_, draw) in DRAWINGS.items():
        committed = load_image((SAMPLES_DIR / name).read_bytes()).convert("L")
        assert np.array_equal(np.asarray(committed), np.asarray(render_drawing(draw))), name
    for name, (_, draw) in PHOTOS.items():
        assert load_image((SAMPLES_DIR / name).read_bytes()).size == render_photo(draw).size


@needs_weights
@pytest.mark.parametrize("name", list(DRAWINGS))
def test_trained_cnn_recognises_each_drawing(fashion, name):
    from app.networks.fashion import looks_like_fashion_mnist

    img = load_image((SAMPLES_DIR / name).read_bytes())
    assert looks_like_fashion_mnist(img)  # the app feeds it as-is, like a data-set image
    with torch.no_grad():
        (label, prob), *_ = fashion.top_k(fashion.preprocess(img), k=1)
    assert label == DRAWINGS[name][0], (name, label, prob)


@needs_weights
@pytest.mark.parametrize("name", list(PHOTOS))
def test_trained_cnn_recognises_each_product_photo_after_the_zalando_pipeline(fashion, name):
    from app.networks.fashion import fashion_input, looks_like_fashion_mnist

    img = load_image((SAMPLES_DIR / name).read_bytes())
    assert not looks_like_fashion_mnist(img)  # the app converts it first
    _, x = fashion_input(fashion, img, "photo")
    with torch.no_grad():
        (label, prob), *_ = fashion.top_k(x, k=1)
    assert label == PHOTOS[name][0], (name, label, prob)
