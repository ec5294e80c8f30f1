"""app.networks.batches: the one way a data set enters a network, used by feature space and unit tables."""

from __future__ import annotations

import pytest
import torch

from app.networks.batches import model_inputs
from tests.conftest import photo


def test_grey_uint8_images_are_normalised_in_order(fashion) -> None:
    images = torch.arange(5 * 28 * 28, dtype=torch.int64).remainder(256).to(torch.uint8).view(5, 28, 28)
    batches = list(model_inputs(fashion, images, 2))
    assert [len(b) for b in batches] == [2, 2, 1]
    expected = (images.float() / 255 - fashion.mean[0]) / fashion.std[0]  # by hand: (p/255 - mean) / std
    torch.testing.assert_close(torch.cat(batches)[:, 0], expected)


def test_normalised_inputs_pass_through_and_big_inputs_come_in_batches_of_16(lite) -> None:
    x = torch.randn(40, 3, 224, 224)
    batches = list(model_inputs(lite, x, 64))  # asked for 64: 224 px inputs are capped at 16 (memory)
    assert [len(b) for b in batches] == [16, 16, 8]
    assert torch.equal(torch.cat(batches), x)


def test_pictures_go_through_the_models_own_preprocessing(lite) -> None:
    pictures = [photo((300, 200), seed=i) for i in range(3)]
    (batch,) = list(model_inputs(lite, pictures, 8))
    torch.testing.assert_close(batch, torch.cat([lite.preprocess(p) for p in pictures]))


def test_wrong_shapes_are_refused_with_the_shape_expected(fashion) -> None:
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        list(model_inputs(fashion, torch.zeros(2, 32, 32, dtype=torch.uint8), 4))
    with pytest.raises(ValueError, match=r"\[N, 1, 28, 28\]"):
        list(model_inputs(fashion, torch.zeros(2, 3, 28, 28), 4))
