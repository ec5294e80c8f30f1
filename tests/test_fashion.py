"""Zalando's photo → Fashion-MNIST conversion: exact small cases plus a round-trip quality bar."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.base.errors import ImageError
from app.networks.datasets import load_fashion_mnist
from app.networks.fashion import (
    STEP_DETAILS,
    extend,
    fashion_input,
    looks_like_fashion_mnist,
    sharpen,
    subsample,
    to_fashion_mnist,
    trim_box,
)
from tests.conftest import photo


def _white(w: int, h: int) -> Image.Image:
    return Image.new("RGB", (w, h), (255, 255, 255))


def test_trim_keeps_content_and_ignores_near_background() -> None:
    img = _white(10, 8)
    for x in range(4, 7):
        for y in range(2, 4):
            img.putpixel((x, y), (200, 0, 0))
    img.putpixel((9, 7), (250, 250, 250))  # distance 8.7 < 12.75: still background
    assert trim_box(img) == (4, 2, 7, 4)
    img.putpixel((1, 6), (242, 242, 242))  # distance 22.5 > 12.75: content
    assert trim_box(img) == (1, 2, 7, 7)


def test_trim_uses_corner_colour_not_white() -> None:
    img = Image.new("RGB", (6, 6), (0, 40, 0))
    img.putpixel((2, 3), (255, 255, 255))
    assert trim_box(img) == (2, 3, 3, 4)


@pytest.mark.parametrize("size", [(40, 30), (1, 1)])
def test_blank_image_is_a_clear_error(size: tuple[int, int]) -> None:
    with pytest.raises(ImageError, match="single flat colour"):
        to_fashion_mnist(Image.new("RGB", size, (90, 120, 200)))


def test_subsample_keeps_every_second_column() -> None:
    # value = column index; NEAREST at scale 2 samples the centres of pixel pairs: columns 1, 3, 5, ...
    img = Image.fromarray(np.tile(np.arange(56, dtype=np.uint8), (56, 1)))
    out = np.asarray(subsample(img))
    assert out.shape == (28, 28)
    np.testing.assert_array_equal(out[0], np.arange(1, 56, 2))


def test_centring_puts_the_odd_pixel_left_and_top() -> None:
    out = np.asarray(extend(Image.new("L", (5, 3), 7), fill=0))
    expected = np.zeros((28, 28), np.uint8)
    expected[13:16, 12:17] = 7  # (28 - 3 + 1) // 2 = 13, (28 - 5 + 1) // 2 = 12
    np.testing.assert_array_equal(out, expected)


def test_sharpen_step_edge_by_hand() -> None:
    # 1-D Gaussian (sigma 1, radius 1) weights: 0.2741, 0.4519, 0.2741. Next to the 0|100 step the
    # blur gives 27.41 and 72.59; both pixels are on the strongest edge (weight 1), so they become
    # 0 - 27.41 -> 0 (clipped) and 100 + 27.41 -> 127. Pixels away from the edge keep their value.
    img = Image.fromarray(np.tile(np.array([0, 0, 100, 100], np.uint8), (4, 1)))
    np.testing.assert_array_equal(np.asarray(sharpen(img)), np.tile([0, 0, 127, 100], (4, 1)))


def test_sharpen_leaves_flat_images_alone() -> None:
    img = Image.new("RGB", (5, 4), (10, 200, 30))
    np.testing.assert_array_equal(np.asarray(sharpen(img)), np.asarray(img))


def test_whole_pipeline_on_a_flat_grey_rectangle() -> None:
    img = _white(200, 100)
    img.paste((100, 100, 100), (30, 40, 80, 60))  # 50 x 20 block
    steps = to_fashion_mnist(img)
    assert [name for name, _ in steps] == list(STEP_DETAILS)
    sizes = {name: im.size for name, im in steps}
    assert sizes["trim"] == (50, 20)
    assert sizes["subsample"] == (28, 11)  # 20 * 28 / 50 = 11.2
    out = steps[-1][1]
    assert out.mode == "L"
    expected = np.zeros((28, 28), np.uint8)
    expected[9:20, :] = 255 - 100  # top offset (28 - 11 + 1) // 2 = 9; negated grey
    np.testing.assert_array_equal(np.asarray(out), expected)


@pytest.mark.parametrize("size", [(2, 1), (3000, 12), (12, 3000)])
def test_tiny_and_extreme_aspect_images(size: tuple[int, int]) -> None:
    img = Image.new("RGB", size, (255, 255, 255))
    img.putpixel((size[0] - 1, size[1] - 1), (0, 0, 0))
    if size != (2, 1):
        img.paste((0, 0, 0), (0, size[1] // 2, size[0], size[1]))
    out = to_fashion_mnist(img)[-1][1]
    assert out.size == (28, 28) and out.mode == "L"
    assert np.asarray(out).max() == 255


def test_transparent_png_counts_as_white_background() -> None:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    img.paste((0, 0, 0, 255), (10, 10, 20, 30))
    out = np.asarray(to_fashion_mnist(img)[-1][1])
    assert out[0, 0] == 0 and out[14, 14] == 255


def test_looks_like_fashion_mnist() -> None:
    images, _ = load_fashion_mnist("test")
    sample = Image.fromarray(images[0].numpy())
    assert looks_like_fashion_mnist(sample)
    assert looks_like_fashion_mnist(sample.resize((84, 84)))
    assert not looks_like_fashion_mnist(sample.resize((300, 300)))  # too large for a data-set image
    assert not looks_like_fashion_mnist(Image.fromarray(255 - images[0].numpy()))  # white background
    assert not looks_like_fashion_mnist(photo((64, 48)))


def test_fashion_input_modes(fashion_untrained) -> None:
    img = _white(60, 90)
    img.paste((20, 20, 20), (10, 10, 50, 80))
    steps, x = fashion_input(fashion_untrained, img, "photo")
    assert [s.name for s in steps] == list(STEP_DETAILS)
    assert x.shape == (1, 1, 28, 28)
    torch.testing.assert_close(x, fashion_untrained.to_tensor(steps[-1].image))
    steps, x = fashion_input(fashion_untrained, img, "dataset")
    torch.testing.assert_close(x, fashion_untrained.preprocess(img))
    with pytest.raises(ValueError, match="mode"):
        fashion_input(fashion_untrained, img, "magic")  # type: ignore[arg-type]


def _product_photo(a: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Dark garment on white, enlarged 8-10x with bicubic smoothing, on a random white margin."""
    f = int(rng.integers(8, 11))
    big = Image.fromarray(255 - a).resize((28 * f, 28 * f), Image.Resampling.BICUBIC)
    left, top, right, bottom = (int(v) for v in rng.integers(5, 80, size=4))
    canvas = Image.new("L", (big.width + left + right, big.height + top + bottom), 255)
    canvas.paste(big, (left, top))
    return canvas.convert("RGB")


@pytest.mark.slow
def test_round_trip_quality_bar(fashion) -> None:
    """500 test images made into product photos come back recognisable and close to the original."""
    images, labels = load_fashion_mnist("test")
    rng = np.random.default_rng(0)
    idx = rng.choice(len(images), 500, replace=False)
    outs, rs = [], []
    for i in idx:
        original = images[i].numpy()
        out = to_fashion_mnist(_product_photo(original, rng))[-1][1]
        outs.append(fashion.to_tensor(out))
        rs.append(np.corrcoef(np.asarray(out, np.float64).ravel(), original.ravel().astype(np.float64))[0, 1])
    predicted = fashion.logits(torch.cat(outs), "fp32").argmax(1)
    accuracy = (predicted == labels[idx]).float().mean().item()
    mean_r = float(np.mean(rs))
    print(f"round trip: accuracy {accuracy:.3f}, mean Pearson r {mean_r:.3f}")
    assert accuracy >= 0.85
    assert mean_r >= 0.9
