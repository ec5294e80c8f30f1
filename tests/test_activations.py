"""One forward pass gives every layer, equal to running the layers by hand, thread-safely."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from app.networks.activations import activations
from app.networks.layers import leaf_layers
from tests.conftest import photo


def _by_hand(model, x):
    """Run the leaf layers one after another (VGG's forward flattens before its classifier)."""
    out, h = {}, x
    names = {r.path: r.name for r in model.layers}
    with torch.no_grad():
        for path, layer in leaf_layers(model.module):
            if path.startswith("classifier.0") and h.dim() == 4 and not isinstance(layer, torch.nn.Flatten):
                h = torch.flatten(h, 1)
            h = layer(h)
            out[names[path]] = h
    return out


def _no_hooks(module):
    return all(
        not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)
        for m in module.modules()
    )


def test_every_layer_equals_running_layers_by_hand(vgg, fashion):
    for model, size in ((vgg, (260, 240)), (fashion, (28, 28))):
        x = model.preprocess(photo(size))
        got, expected = activations(model, x), _by_hand(model, x)
        assert list(got) == [r.name for r in model.layers]
        for name, tensor in expected.items():
            torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=1e-4, msg=name)


def test_conv_output_is_not_overwritten_by_its_relu(fashion):
    out = activations(fashion, fashion.preprocess(photo((28, 28))))
    assert (out["bn1_1"] < 0).any() and (out["relu1_1"] >= 0).all()


def test_threads_get_sequential_results_and_leave_no_hooks(fashion, vgg):
    images = [fashion.preprocess(photo((40, 30), seed=s)) for s in range(8)]
    sequential = [activations(fashion, x)["fc4"] for x in images]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda x: activations(fashion, x)["fc4"], images))
    for a, b in zip(sequential, parallel, strict=True):
        assert torch.equal(a, b)
    assert _no_hooks(fashion.module) and _no_hooks(vgg.module)


def test_no_analysis_traces_after_load(fashion, fashion_untrained, monkeypatch):
    """fx tracing patches nn.Module.__call__ process-wide, so it must only happen at model load."""
    from torch import fx

    from app.analyses.attribution import grad_cam, guided_backprop
    from app.analyses.embedding import features
    from app.analyses.occlusion import occlusion_map
    from app.networks.models import get_model

    activations(fashion, fashion.preprocess(photo((28, 28))))  # both loaded (and traced) by the fixtures
    activations(fashion_untrained, fashion.preprocess(photo((28, 28))))

    def no_tracing(*args, **kwargs):
        raise AssertionError("fx tracing during an analysis")

    monkeypatch.setattr(fx.Tracer, "trace", no_tracing)
    x = fashion.preprocess(photo((40, 30), seed=2))
    grad_cam(fashion, x, 1)
    guided_backprop(fashion, x, target=1)
    features(fashion, x)
    occlusion_map(fashion, x, 7, 7)
    same_structure = get_model("fashion_cnn", weights=None)  # e.g. a network trained in the session
    assert torch.equal(activations(same_structure, x)["fc4"], same_structure.logits(x))
