"""Many sessions at once on the shared models: every analysis returns what it returns alone.

Streamlit runs each browser session in its own thread against the same cached
LoadedModel, so this mixes every backend analysis over both models and several
images in 8 threads and compares with a sequential run; afterwards no hook may
be left on either module and the ReLUs must be untouched.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from app.analyses.attribution import grad_cam, guided_backprop, saliency
from app.analyses.embedding import features
from app.analyses.occlusion import occlusion_map
from app.networks.activations import activations
from tests.conftest import photo

pytestmark = pytest.mark.slow


def _jobs(fashion, vgg, lite):
    """(name, callable) pairs: each is one analysis a page would run for a user."""
    fx = [fashion.preprocess(photo((40, 36), seed=s)) for s in range(4)]
    vx = [vgg.preprocess(photo((240, 230), seed=s)) for s in range(2)]
    jobs = []
    for i, x in enumerate(fx):
        jobs += [
            (f"fashion act {i}", lambda x=x: activations(fashion, x)["fc4"].numpy()),
            (f"fashion saliency {i}", lambda x=x, t=i: saliency(fashion, x, t)),
            (f"fashion guided {i}", lambda x=x: guided_backprop(fashion, x, layer="relu2_1", channel=3)),
            (f"fashion gradcam {i}", lambda x=x, t=i: grad_cam(fashion, x, t)),
            (f"fashion occlusion {i}", lambda x=x: occlusion_map(fashion, x, 7, 7, precision="exact").logits),
            (f"fashion features {i}", lambda x=x: features(fashion, [_pil(fashion, x)])),
        ]
    for i, x in enumerate(vx):
        jobs += [
            (f"vgg act {i}", lambda x=x: activations(vgg, x)["fc8"].numpy()),
            (f"vgg gradcam {i}", lambda x=x: grad_cam(vgg, x, 1)),
        ]
    # EfficientNet-Lite0: a graph with residual additions, ReLU6 and the dense occlusion engine
    lx = [lite.to_tensor(photo((112, 112), seed=s)) for s in range(2)]
    for i, x in enumerate(lx):
        jobs += [
            (f"lite act {i}", lambda x=x: activations(lite, x)["stage4.block2.add"].numpy()),
            (f"lite guided {i}", lambda x=x: guided_backprop(lite, x, target=285)),
            (f"lite gradcam {i}", lambda x=x: grad_cam(lite, x, 285)),
            (f"lite occlusion {i}", lambda x=x: occlusion_map(lite, x, 56, 56, precision="exact").logits),
        ]
    return jobs


def _pil(model, x):
    from PIL import Image

    grey = (model.denormalise(x)[0] * 255).round().byte().numpy()
    return Image.fromarray(grey, "L").convert("RGB")


def _hooks(module):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in module.modules()
    )


def test_eight_threads_mixed_analyses_equal_sequential(fashion, vgg, lite):
    jobs = _jobs(fashion, vgg, lite)
    sequential = {name: fn() for name, fn in jobs}
    shuffled = jobs * 2
    random.Random(0).shuffle(shuffled)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: (job[0], job[1]()), shuffled))
    for name, value in results:
        np.testing.assert_array_equal(value, sequential[name], err_msg=name)
    for model in (fashion, vgg, lite):
        assert _hooks(model.module) == 0
        assert all(not m.inplace for m in model.module.modules() if isinstance(m, torch.nn.ReLU | torch.nn.ReLU6))
        assert all(p.grad is None for p in model.module.parameters())
