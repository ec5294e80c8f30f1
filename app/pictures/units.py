"""What the What units look for page keeps of a unit's best images: the pictures it shows, no larger.

A unit's best images are cut to its receptive field, and deep units see far past the image:
EfficientNet-Lite0's last layers have 851-pixel fields on a 224-pixel input, so one patch
and its projection held as float32 arrays cost 17 MB, a unit's nine 156 MB and a layer
overview's 64 patches 530 MB. Kept in the shared cache for every unit a student opened,
ten students on deep layers took a server from 2.0 to 12.6 GB resident (issue 20). The page
shows each picture at most SIDE pixels a side, so that is all the cache needs: the same
pictures, at most side x side x 3 bytes each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from app.analyses import dataset_examples as D
from app.analyses.attribution import gradient_image
from app.networks.fields import Box
from app.networks.loaded import LoadedModel
from app.pictures.figures import scaled_picture, side_by_side

PROJECTION_PERCENTILE = 99  # |gradient| at this percentile is full colour: a few extreme pixels do not grey the rest


class ExampleView(NamedTuple):
    """One of a unit's best images as the page shows it (D.Example with its arrays turned into pictures)."""

    value: float
    image: int
    y: int
    x: int
    box: Box
    patch: np.ndarray  # uint8 RGB [h, w, 3], at most `side` pixels a side
    projection: np.ndarray  # uint8 RGB, the guided backprop as `gradient_image` draws it


def fitted(rgb: np.ndarray, side: int) -> np.ndarray:
    """An RGB picture (uint8 or 0..1 floats) as uint8, shrunk to `side` pixels on its longer side if larger.

    Shrunk exactly as `scaled_picture` shrinks and never enlarged, so `scaled_picture(fitted(p, s), s)`
    is `scaled_picture(p, s)`: the page shows the same picture it would from the full-size one."""
    return scaled_picture(rgb, min(side, max(np.shape(rgb)[:2])))


def patch_picture(model: LoadedModel, patch: np.ndarray, side: int) -> np.ndarray:
    """A pre-processed patch [C, h, w] as the RGB pixels it came from, at most `side` pixels a side."""
    return fitted(D.to_rgb(model, patch), side)


def projection_picture(projection: np.ndarray, side: int) -> np.ndarray:
    """A projection [C, h, w] (signed gradient) as a picture, zero grey, at most `side` pixels a side."""
    return fitted(gradient_image(projection, PROJECTION_PERCENTILE), side)


def example_views(model: LoadedModel, examples: Iterable[D.Example], side: int) -> list[ExampleView]:
    """The unit's best images with their pictures at most `side` pixels a side (the arrays are let go)."""
    return [
        ExampleView(
            ex.value,
            ex.image,
            ex.y,
            ex.x,
            ex.box,
            patch_picture(model, ex.patch, side),
            projection_picture(ex.projection, side),
        )
        for ex in examples
    ]


def overview_tiles(model: LoadedModel, patches: Iterable[np.ndarray | None], side: int) -> list[np.ndarray | None]:
    """The layer overview's patches (D.best_patches) as pictures at most `side` pixels a side."""
    return [None if p is None else patch_picture(model, p, side) for p in patches]


def pair(patch: np.ndarray, projection: np.ndarray, side: int) -> np.ndarray:
    """A patch picture and its projection's side by side, each `side` pixels on its longer side."""
    return side_by_side([scaled_picture(patch, side), scaled_picture(projection, side)])
