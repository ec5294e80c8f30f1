"""What "What units look for" keeps of a unit's best images: the pictures it shows, never larger (issue 20:
full-size patches of deep EfficientNet-Lite0 units, 851 px fields, grew a server by 0.9 GB per student)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.analyses import dataset_examples as D
from app.analyses.attribution import gradient_image
from app.networks.loaded import LoadedModel
from app.pictures import units as U
from app.pictures.figures import scaled_picture
from app.serving.lru import approx_nbytes

SIDE = 112


def _full_pictures(model: LoadedModel, ex: D.Example) -> tuple[np.ndarray, np.ndarray]:
    """The oracle: the pictures drawn from the full-size arrays, as the page drew them before."""
    return (
        scaled_picture(D.to_rgb(model, ex.patch), SIDE),
        scaled_picture(gradient_image(ex.projection, U.PROJECTION_PERCENTILE), SIDE),
    )


@pytest.mark.slow
def test_a_deep_units_views_are_small_and_show_the_same_pictures(lite: LoadedModel) -> None:
    layer = "head.relu"  # 851-pixel fields on the 224-pixel input
    x = D.photo_inputs(lite, [p.image for p in D.bundled_photos()[::40]])
    table = D.top_units_table(lite, x, k=3, layers=[layer])
    examples = D.unit_examples(lite, table, lambda idx: x[idx], layer, 7, n=3)
    views = U.example_views(lite, examples, SIDE)
    assert approx_nbytes(examples) > 40 * 2**20  # what the cache used to keep: 17 MB per image
    assert approx_nbytes(views) < 3 * (2 * SIDE * SIDE * 3 + 2000)
    for ex, view in zip(examples, views, strict=True):
        assert (view.value, view.image, view.y, view.x, view.box) == (ex.value, ex.image, ex.y, ex.x, ex.box)
        assert view.patch.dtype == np.uint8 and max(view.patch.shape[:2]) == SIDE
        patch, projection = _full_pictures(lite, ex)
        np.testing.assert_array_equal(scaled_picture(view.patch, SIDE), patch)
        np.testing.assert_array_equal(scaled_picture(view.projection, SIDE), projection)
        np.testing.assert_array_equal(U.pair(view.patch, view.projection, SIDE)[:, :SIDE], patch)


def test_small_fields_are_kept_at_their_own_size_and_shown_as_before(fashion: LoadedModel) -> None:
    x = D.fashion_inputs(fashion, range(40))
    table = D.top_units_table(fashion, x, k=4, layers=["conv2_1"])
    examples = D.unit_examples(fashion, table, lambda idx: x[idx], "conv2_1", 3, n=4)
    views = U.example_views(fashion, examples, SIDE)
    for ex, view in zip(examples, views, strict=True):
        assert view.patch.shape[:2] == ex.patch.shape[1:]  # 10x10: never enlarged in the cache
        patch, projection = _full_pictures(fashion, ex)
        np.testing.assert_array_equal(scaled_picture(view.patch, SIDE), patch)  # crisp squares, as before
        np.testing.assert_array_equal(scaled_picture(view.projection, SIDE), projection)


def test_overview_tiles_show_each_channels_best_patch(fashion: LoadedModel) -> None:
    x = D.fashion_inputs(fashion, range(30))
    table = D.top_units_table(fashion, x, k=2, layers=["relu2_2"])
    patches = D.best_patches(fashion, table, lambda idx: x[idx], "relu2_2", range(0, 8))
    tiles = U.overview_tiles(fashion, patches, 64)
    for channel, tile in enumerate(tiles):
        _, image, y, x_pos = table.best("relu2_2")[channel]
        patch = D.unit_patch(fashion, x[image], "relu2_2", y, x_pos)[0]
        np.testing.assert_array_equal(tile, U.fitted(D.to_rgb(fashion, patch), 64))


def test_fitted_shrinks_like_scaled_picture_and_never_enlarges() -> None:
    big = torch.rand(300, 200, 3, generator=torch.Generator().manual_seed(0)).numpy()
    small = big[:20, :30]
    assert U.fitted(big, 100).shape == (100, 67, 3)
    np.testing.assert_array_equal(U.fitted(big, 100), scaled_picture(big, 100))
    assert U.fitted(small, 100).shape == (20, 30, 3)
    np.testing.assert_array_equal(scaled_picture(U.fitted(small, 100), 100), scaled_picture(small, 100))
