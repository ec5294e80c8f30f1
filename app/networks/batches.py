"""How a data set enters a network: normalised inputs, batch by batch.

Feature-space maps, unit tables and collection embeddings all run many images through
a network; they share this one batching so each image is prepared the same way
whichever analysis asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from PIL import Image

from app.networks.loaded import LoadedModel

Images = torch.Tensor | Sequence[Image.Image]
_BIG_INPUT_BATCH = 16  # VGG-sized inputs: bounds activation memory (about 0.4 GB for 16 at 224x224)


def model_inputs(model: LoadedModel, images: Images, batch_size: int) -> Iterator[torch.Tensor]:
    """Normalised model inputs [B, C, H, W] in order, batch by batch (the one way data sets enter a model).

    Accepts raw grey images (uint8 [N, H, W], the Fashion-MNIST tensors), already
    normalised inputs (float [N, C, H, W]) or PIL images (run through model.preprocess).
    """
    step = batch_size if model.input_size <= 64 else min(batch_size, _BIG_INPUT_BATCH)
    if isinstance(images, torch.Tensor):
        size = (model.input_size, model.input_size)
        if images.dtype == torch.uint8:
            if images.ndim != 3 or tuple(images.shape[1:]) != size or model.channels != 1:
                raise ValueError(f"uint8 images must be [N, {size[0]}, {size[1]}] grey images for {model.name}")
            for i in range(0, len(images), step):
                yield model.normalise(images[i : i + step].unsqueeze(1))
        else:
            if images.ndim != 4 or tuple(images.shape[1:]) != (model.channels, *size):
                raise ValueError(f"inputs must be [N, {model.channels}, {size[0]}, {size[1]}] for {model.name}")
            for i in range(0, len(images), step):
                yield images[i : i + step].float()
    else:
        for i in range(0, len(images), step):
            yield torch.cat([model.preprocess(img) for img in images[i : i + step]])
