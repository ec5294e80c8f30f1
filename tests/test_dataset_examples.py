"""Top-activating dataset patches against independent oracles: brute-force sorting of plain
forward passes, the gradient support of a linearised network (the receptive field), captum's
guided backprop on a truncated network, and the trained network's own class units."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop
from PIL import Image
from torch import fx, nn

from app.analyses import attribution
from app.analyses import dataset_examples as D
from app.base.errors import DatasetMissingError
from app.networks.activations import activations, graph_copy
from app.networks.datasets import load_fashion_mnist
from app.networks.fields import Geometry
from app.networks.layers import layer_table
from app.networks.loaded import LoadedModel
from app.serving.store import store_dir

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")

N = 300
LAYERS = ["conv1_1", "relu1_2", "pool1", "conv2_2", "pool2", "fc3", "fc4"]


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        return load_fashion_mnist("test")
    except DatasetMissingError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def small(fashion: LoadedModel, test_set) -> tuple[torch.Tensor, D.TopTable]:
    """The first 300 test images, pre-processed, and their table (k=9) built in one batch."""
    x = D.fashion_inputs(fashion, range(N))
    return x, D.top_units_table(fashion, x, k=9, batch_size=N)


# ---- the table against brute force -----------------------------------------------------


def test_table_equals_sorting_each_images_max_from_a_plain_forward_pass(fashion: LoadedModel, small) -> None:
    x, table = small
    maps = activations(fashion, x)
    for layer in LAYERS:
        out = maps[layer].numpy()
        spatial = out.ndim == 4
        for channel in (0, 5, out.shape[1] - 1):
            per_image = out[:, channel].reshape(N, -1) if spatial else out[:, channel : channel + 1]
            best, where = per_image.max(1), per_image.argmax(1)
            order = np.lexsort((np.arange(N), -best))[:9]  # by value, then by image index
            got = table.top(layer, channel)
            assert [e[1] for e in got] == order.tolist(), (layer, channel)
            np.testing.assert_allclose([e[0] for e in got], best[order], rtol=1e-5, atol=1e-6)
            if spatial:
                w = out.shape[-1]
                assert [(e[2], e[3]) for e in got] == [(int(p // w), int(p % w)) for p in where[order]]


def test_streaming_build_equals_one_shot_build(fashion: LoadedModel, small) -> None:
    x, one_shot = small
    batches = (x[i : i + 37] for i in range(0, N, 37))  # uneven batches from a generator
    streamed = D.top_units_table(fashion, batches, k=9)
    assert streamed.layers == one_shot.layers and streamed.n_images == N
    for layer in one_shot.layers:
        np.testing.assert_array_equal(streamed.images[layer], one_shot.images[layer])
        np.testing.assert_array_equal(streamed.ys[layer], one_shot.ys[layer])
        np.testing.assert_array_equal(streamed.xs[layer], one_shot.xs[layer])
        np.testing.assert_allclose(streamed.values[layer], one_shot.values[layer], rtol=1e-5, atol=1e-6)


def test_a_stored_value_is_the_activation_recomputed_at_its_image_and_place(fashion: LoadedModel, small) -> None:
    x, table = small
    for layer in LAYERS:
        for channel in (1, 3):
            for value, index, y, x_pos in table.top(layer, channel)[:3]:
                out = activations(fashion, x[index : index + 1])[layer][0, channel]
                recomputed = float(out[y, x_pos] if out.dim() == 2 else out)
                assert recomputed == pytest.approx(value, rel=1e-4, abs=1e-6)
                assert D.unit_on_image(fashion, x[index], layer, channel)[0] == pytest.approx(value, rel=1e-4)


def test_ties_go_to_the_lower_image_index_and_short_sets_leave_empty_slots(fashion: LoadedModel) -> None:
    x = D.fashion_inputs(fashion, [7, 7, 3, 7])  # images 0, 1 and 3 are the same picture
    table = D.top_units_table(fashion, x, k=6, layers=["pool2", "fc4"])
    for layer in ("pool2", "fc4"):
        for channel in range(4):
            got = [e[1] for e in table.top(layer, channel)]
            assert len(got) == 4
            same = [i for i in got if i != 2]
            assert same == [0, 1, 3]
    assert table.images["fc4"][0, 4:].tolist() == [-1, -1]


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_unit_maxima_take_the_first_position_in_raster_order(layout: torch.memory_format) -> None:
    t = torch.randint(0, 3, (4, 6, 5, 7)).float().contiguous(memory_format=layout)  # many ties
    values, positions = D._unit_maxima(t)
    flat = t.flatten(2).numpy()
    np.testing.assert_array_equal(values.numpy(), flat.max(2))
    np.testing.assert_array_equal(positions.numpy(), flat.argmax(2))  # numpy: first occurrence


def test_a_relus_maxima_follow_from_its_inputs() -> None:
    t = torch.randn(5, 8, 6, 7).contiguous(memory_format=torch.channels_last)
    t[:, :3] = -t[:, :3].abs()  # channels with nothing positive: ReLU gives all zeros there
    got = D._relu_of_maxima(D._unit_maxima(t))
    expected = D._unit_maxima(torch.relu(t))
    np.testing.assert_array_equal(got[0].numpy(), expected[0].numpy())
    np.testing.assert_array_equal(got[1].numpy(), expected[1].numpy())


def test_quantiles_rank_a_new_value_among_the_data_set(fashion: LoadedModel, small) -> None:
    x, table = small
    out = activations(fashion, x)["relu2_2"][:, 4].flatten(1).amax(1).numpy()
    for value in np.percentile(out, [10, 50, 90]):
        assert table.share_below("relu2_2", 4, float(value)) == pytest.approx((out < value).mean(), abs=0.02)
    assert table.share_below("relu2_2", 4, float(out.max()) + 1) == 1.0
    assert table.share_below("relu2_2", 4, float(out.min()) - 1) == 0.0


def test_table_round_trips_through_bytes(small) -> None:
    _, table = small
    again = D.TopTable.from_bytes(table.to_bytes())
    assert again.layers == table.layers and (again.k, again.n_images) == (table.k, table.n_images)
    for layer in table.layers:
        for field in ("values", "images", "ys", "xs", "quantiles"):
            np.testing.assert_array_equal(getattr(again, field)[layer], getattr(table, field)[layer])


@pytest.mark.slow
def test_class_units_of_the_trained_network_prefer_their_own_class(fashion: LoadedModel, test_set) -> None:
    _, labels = test_set
    table = D.top_units_table(fashion, D.fashion_inputs(fashion), k=9, layers=["fc4"])
    for c in range(10):
        hits = sum(int(labels[i]) == c for _, i, _, _ in table.top("fc4", c))
        assert hits >= 8, (fashion.labels[c], hits)
    counts = D.label_counts(table, "fc4", 9, [fashion.labels[int(v)] for v in labels])
    assert next(iter(counts)) == "Ankle boot" and sum(counts.values()) == 9


def test_stored_fashion_table_is_written_once_and_keyed_by_weights(
    fashion: LoadedModel, fashion_untrained: LoadedModel, test_set, monkeypatch, tmp_path
) -> None:
    images, labels = test_set
    monkeypatch.setattr(D, "load_fashion_mnist", lambda split: (images[:64], labels[:64]))
    monkeypatch.setenv("CNN_LENS_CACHE", str(tmp_path))
    assert D.stored_fashion_table(fashion, k=5) is None  # nothing stored yet, and nothing computed
    assert not list(store_dir().glob("units_*.npz"))
    first = D.fashion_test_table(fashion, k=5)
    assert len(list(store_dir().glob("units_*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although stored")

    with monkeypatch.context() as m:
        m.setattr(D, "top_units_table", fail)
        again = D.fashion_test_table(fashion, k=5)
        stored = D.stored_fashion_table(fashion, k=5)
    np.testing.assert_array_equal(again.images["fc4"], first.images["fc4"])
    assert stored is not None and np.array_equal(stored.images["fc4"], first.images["fc4"])
    assert D.stored_fashion_table(fashion_untrained, k=5) is None  # keyed by the weights
    D.fashion_test_table(fashion_untrained, k=5)  # other weights: another file
    assert len(list(store_dir().glob("units_*.npz"))) == 2
    D.fashion_test_table(fashion, k=7, keep=False)  # a session's own network: never written
    assert len(list(store_dir().glob("units_*.npz"))) == 2


# ---- receptive-field boxes against the gradient support of a linearised copy ----------------


def _linearised(model: LoadedModel) -> nn.Module:
    """A copy with ReLU -> identity and max-pool -> average-pool: every input pixel in a unit's
    receptive field then reaches it through a path of non-zero weights, and no other does."""
    net = copy.deepcopy(model.module).float().to(memory_format=torch.contiguous_format)
    for name, m in list(net.named_modules()):
        replacement = None
        if isinstance(m, nn.ReLU):
            replacement = nn.Identity()
        elif isinstance(m, nn.MaxPool2d):
            replacement = nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode)
        if replacement is not None:
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, child, replacement)
    return net


def _gradient_boxes(model: LoadedModel, layer: str, units: list[tuple[int, int, int]]) -> list[tuple]:
    """Bounding box (top, left, bottom, right) of the non-zero input gradient of each (channel, y, x)."""
    graph = graph_copy(model)
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = ({layer: output.args[0][layer]},)
    module = fx.GraphModule(_linearised(model), graph)
    module.graph.eliminate_dead_code()
    module.recompile()
    size = model.input_size
    x = torch.randn(len(units), model.channels, size, size, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    out = module(x)[layer]
    rows = torch.arange(len(units))
    c, ys, xs = (torch.tensor([u[i] for u in units]) for i in range(3))
    (grad,) = torch.autograd.grad(out[rows, c, ys, xs].sum(), [x])
    boxes = []
    for g in grad.abs().sum(1):
        r, q = torch.nonzero(g, as_tuple=True)
        boxes.append((int(r.min()), int(q.min()), int(r.max()) + 1, int(q.max()) + 1))
    return boxes


def _clipped(box: D.Box, size: int) -> tuple:
    top, left, bottom, right = box
    return max(top, 0), max(left, 0), min(bottom, size), min(right, size)


def _check_boxes(model: LoadedModel, layer: str) -> None:
    _, h, w = model.layer(layer).out_shape
    units = [(0, h // 2, w // 2), (1, 0, 0), (2, h - 1, w - 1), (0, 0, w // 2), (1, h // 2 + 1, w - 1)]
    for (_, y, x), expected in zip(units, _gradient_boxes(model, layer, units), strict=True):
        box = D.receptive_box(model, layer, y, x)
        assert _clipped(box, model.input_size) == expected, (layer, y, x, box)


@pytest.mark.parametrize("layer", ["conv1_1", "relu1_2", "pool1", "conv2_1", "conv2_2", "pool2"])
def test_receptive_box_is_the_gradient_support_fashion(fashion: LoadedModel, layer: str) -> None:
    _check_boxes(fashion, layer)


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["conv1_2", "pool2", "conv3_3", "conv5_3"])
def test_receptive_box_is_the_gradient_support_vgg(vgg: LoadedModel, layer: str) -> None:
    _check_boxes(vgg, layer)


def test_geometry_follows_residual_branches() -> None:
    """A residual block: the add's units see the union of both branches (here the 5x5 conv's field)."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
            self.branch = nn.Conv2d(4, 4, 5, padding=2)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem(x)
            h = h + self.branch(h)
            return self.head(h.mean((2, 3)))

    rows = {row.name: row for row in layer_table(Block().eval(), (1, 16, 16))}
    assert rows["stem"].geometry == Geometry((3, 3), (2, 2), (-1, -1))
    assert rows["branch"].geometry == Geometry((11, 11), (2, 2), (-5, -5))
    assert rows["add"].geometry == Geometry((11, 11), (2, 2), (-5, -5))
    assert rows["head"].geometry is None
    assert rows["stem"].out_shape == (4, 8, 8)


# ---- patches and projections -------------------------------------------------------------


def test_patch_is_the_zero_padded_crop_of_the_box(fashion: LoadedModel) -> None:
    x = D.fashion_inputs(fashion, [0])
    crop, box = D.unit_patch(fashion, x, "conv1_1", 0, 0)
    assert box == (-1, -1, 2, 2) and crop.shape == (1, 3, 3)
    assert (crop[:, 0, :] == 0).all() and (crop[:, :, 0] == 0).all()
    np.testing.assert_array_equal(crop[:, 1:, 1:], x[0, :, :2, :2].numpy())
    crop, box = D.unit_patch(fashion, x[0], "pool2", 3, 3)  # [C, H, W] works too
    assert box == (6, 6, 22, 22)
    np.testing.assert_array_equal(crop, x[0, :, 6:22, 6:22].numpy())
    crop, box = D.unit_patch(fashion, x, "fc3", 0, 0)
    assert box == (0, 0, 28, 28)


class _Unit(nn.Module):
    """A truncated Sequential that outputs one unit's value: captum's guided backprop hooks its ReLUs."""

    def __init__(self, body: nn.Sequential, channel: int, y: int, x: int) -> None:
        super().__init__()
        self.body, self.where = body, (channel, y, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, y, x_ = self.where
        return self.body(x)[:, c, y, x_][:, None]


def test_projection_is_captums_guided_backprop_of_the_single_unit(fashion: LoadedModel) -> None:
    x = D.fashion_inputs(fashion, [11])
    layer, channel, y, x_pos = "relu2_2", 9, 6, 4
    index = int(fashion.layer(layer).path.split(".")[1])
    unit = _Unit(copy.deepcopy(fashion.module.features[: index + 1]), channel, y, x_pos)
    expected = GuidedBackprop(unit).attribute(x.clone(), target=0)[0].detach().numpy()
    got = D.unit_projection(fashion, x, layer, channel, y, x_pos)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    top, left, bottom, right = D.receptive_box(fashion, layer, y, x_pos)
    outside = np.ones(got.shape[-2:], bool)
    outside[max(top, 0) : bottom, max(left, 0) : right] = False
    assert (got[:, outside] == 0).all()  # nothing outside the receptive field


def _check_cropped_projections(model: LoadedModel, x: torch.Tensor, layer: str) -> None:
    _, h, w = model.layer(layer).out_shape
    positions = [(h // 2, w // 2), (0, 0), (h - 1, w - 1), (0, w - 2), (h - 2, 1)][: len(x)]
    full = attribution.guided_units(model, x, layer, 3, positions)
    cropped = D.unit_projections(model, x, layer, 3, positions)
    assert np.abs(full).max() > 0
    np.testing.assert_allclose(cropped, full, rtol=0, atol=1e-5 * np.abs(full).max())


@pytest.mark.parametrize("layer", ["conv1_1", "relu1_2", "pool1", "relu2_1", "conv2_2"])
def test_projections_run_on_the_receptive_field_equal_the_full_pass_fashion(fashion: LoadedModel, layer) -> None:
    _check_cropped_projections(fashion, D.fashion_inputs(fashion, [3, 8, 21, 40, 77]), layer)


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["relu2_2", "pool3", "relu4_3"])
def test_projections_run_on_the_receptive_field_equal_the_full_pass_vgg(vgg: LoadedModel, layer) -> None:
    photos = [p.image for p in D.bundled_photos()[::40]]
    _check_cropped_projections(vgg, D.photo_inputs(vgg, photos), layer)


def test_examples_crop_patches_and_projections_to_the_same_box(fashion: LoadedModel, small) -> None:
    x, table = small
    examples = D.unit_examples(fashion, table, lambda idx: x[idx], "conv2_1", 3, n=4)
    assert [e.image for e in examples] == [e[1] for e in table.top("conv2_1", 3, 4)]
    for e in examples:
        assert e.patch.shape == e.projection.shape == (1, 10, 10)
        single = D.unit_projection(fashion, x[e.image], "conv2_1", 3, e.y, e.x)
        np.testing.assert_allclose(e.projection, D.crop(single, e.box), atol=1e-6)


def test_bundled_photos_are_deterministic_labelled_variants() -> None:
    photos = D.bundled_photos(side=64)
    assert len(photos) >= 200 and len({p.name for p in photos}) == len(photos)
    assert all(isinstance(p.image, Image.Image) and p.image.size == (64, 64) for p in photos)
    again = D.bundled_photos(side=64)
    assert np.array_equal(np.asarray(photos[5].image), np.asarray(again[5].image))
    assert np.array_equal(np.asarray(photos[1].image), np.asarray(photos[0].image)[:, ::-1])
    assert len({p.name.split("/")[0] for p in photos}) == len(photos) // 20


def test_bad_arguments_are_refused(fashion: LoadedModel, small) -> None:
    x, table = small
    with pytest.raises(ValueError, match="k must be"):
        D.top_units_table(fashion, x, k=0)
    with pytest.raises(ValueError, match="no images"):
        D.top_units_table(fashion, iter([]))
    with pytest.raises(KeyError, match="no table"):
        table.top("flatten", 0)
    with pytest.raises(ValueError, match="channels"):
        D.unit_projection(fashion, x[0], "conv1_1", 99, 0, 0)
    with pytest.raises(ValueError, match="inside"):
        D.unit_projection(fashion, x[0], "conv1_1", 0, 28, 0)


@pytest.mark.slow
def test_threads_sharing_the_model_get_the_sequential_results(fashion: LoadedModel) -> None:
    """Tables, projections and geometry from several sessions at once equal those computed alone,
    and nothing is left on the shared module."""
    from concurrent.futures import ThreadPoolExecutor

    x = D.fashion_inputs(fashion, range(48))
    table = D.top_units_table(fashion, x, k=5, batch_size=16)
    projection = D.unit_projection(fashion, x[5], "relu2_1", 2, 3, 4)
    hooks_before = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in fashion.module.modules())

    def job(i: int):
        if i % 2:
            return D.top_units_table(fashion, x, k=5, batch_size=16)
        return D.unit_projection(fashion, x[5], "relu2_1", 2, 3, 4)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(job, range(12)))
    for i, result in enumerate(results):
        if i % 2:
            for layer in table.layers:
                np.testing.assert_array_equal(result.images[layer], table.images[layer])
                np.testing.assert_array_equal(result.values[layer], table.values[layer])
        else:
            np.testing.assert_array_equal(result, projection)
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in fashion.module.modules()) == hooks_before


# ---- ReLU6: ranking before the clamp, projections through saturated units ---------------------


def _clamp_net(clamp: nn.Module) -> LoadedModel:
    """One 4x4 grey channel in, a 1x1 conv (weight 1, bias 0: the pixels themselves) through `clamp`, one score.
    Its layers are named by the layer table: conv1_1, relu1_1 (the clamp), flatten, fc1."""
    net = nn.Sequential(
        OrderedDict(conv=nn.Conv2d(1, 1, 1), clamp=clamp, flat=nn.Flatten(), fc=nn.Linear(16, 1, bias=False))
    )
    with torch.no_grad():
        net.conv.weight.fill_(1.0)
        net.conv.bias.zero_()
        net.fc.weight.fill_(1.0)
    model = LoadedModel(
        "relu1_1", "relu1_1", net.eval(), ("score",), 4, (0.0,), (1.0,), "hand-set", True, torch.device("cpu")
    )
    model.layers = layer_table(net, (1, 4, 4))
    return model


@pytest.mark.parametrize("clamp", [nn.ReLU6(), nn.ReLU6(inplace=True)], ids=["relu6", "in-place"])
@pytest.mark.parametrize("layers", [["conv1_1", "relu1_1"], ["relu1_1"]], ids=["input-in-table", "input-not-in-table"])
def test_a_clamped_layer_ranks_images_by_the_value_before_the_clamp(clamp: nn.Module, layers: list[str]) -> None:
    """Images 1 and 2 both reach 6, the ceiling, but image 2 is driven harder (9 against 7): it ranks first,
    at the place of its 9 (its 6.5 comes first in raster order). Image 0 stays under the ceiling (5)."""
    model = _clamp_net(clamp)
    x = torch.zeros(3, 1, 4, 4)
    x[0, 0, 1, 1] = 5.0
    x[1, 0, 3, 0] = 7.0
    x[2, 0, 0, 0], x[2, 0, 2, 3] = 6.5, 9.0
    assert D.clamped_layers(model) == {"relu1_1"}
    table = D.top_units_table(model, x, k=3, layers=layers)
    assert table.top("relu1_1", 0) == [(6.0, 2, 2, 3), (6.0, 1, 3, 0), (5.0, 0, 1, 1)]
    assert table.ranked_by("relu1_1", 0) == [9.0, 7.0, 5.0]
    assert table.share_below("relu1_1", 0, 8.0) == pytest.approx(0.75, abs=0.01)  # in scores: between 7 and 9
    hit = D.unit_on_image(model, x[2], "relu1_1", 0)
    assert hit == (6.0, 2, 3, 9.0)
    again = D.TopTable.from_bytes(table.to_bytes())
    assert again.ranked_by("relu1_1", 0) == [9.0, 7.0, 5.0] and again.scores.keys() == {"relu1_1"}
    if "conv1_1" in layers:  # an unclamped layer ranks by its own value
        assert table.top("conv1_1", 0) == [(9.0, 2, 2, 3), (7.0, 1, 3, 0), (5.0, 0, 1, 1)]
        assert table.ranked_by("conv1_1", 0) == [9.0, 7.0, 5.0]


def test_projection_of_a_saturated_relu6_unit_shows_its_pattern() -> None:
    """A 3x3 conv through ReLU6, its unit driven to 10 (saturated at 6): the projection is the conv's kernel
    wherever the input drives it positively, as captum's guided backprop gives it for the same net with a
    plain ReLU (one rectifier, so the same units are on). ReLU6's own derivative would give all zeros."""
    kernel = torch.tensor([[1.0, -1.0, 0.5], [2.0, 1.0, -0.5], [0.0, 1.5, 1.0]])
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 1, 3, padding=1), clamp=nn.ReLU6()))
    with torch.no_grad():
        net.conv.weight.copy_(kernel.view(1, 1, 3, 3))
        net.conv.bias.fill_(8.0)
    model = LoadedModel("sat", "sat", net.eval(), ("u",), 6, (0.0,), (1.0,), "hand-set", True, torch.device("cpu"))
    model.layers = layer_table(net, (1, 6, 6))
    x = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(net(x)[0, 0, 2, 3]) == 6.0  # saturated
    got = D.unit_projection(model, x, "relu1_1", 0, 2, 3)
    plain = nn.Sequential(copy.deepcopy(net.conv), nn.ReLU())
    expected = GuidedBackprop(_Unit(plain, 0, 2, 3)).attribute(x.clone(), target=0)[0].detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got[0, 1:4, 2:5], kernel.numpy())


@pytest.mark.slow
def test_efficientnet_relu6_units_rank_by_their_input_and_project_through_saturation(lite: LoadedModel) -> None:
    """On the shipped EfficientNet-Lite0 the nine best images of a ReLU6 unit are the nine with the largest
    input to the clamp (its batch norm's output, brute force), many of them at 6, none with a flat projection."""
    layer, source = "stage2.block1.expand_relu", "stage2.block1.expand_bn"
    x = D.photo_inputs(lite, [p.image for p in D.bundled_photos()[::8]])
    table = D.top_units_table(lite, x, k=9, layers=[layer])
    before = activations(lite, x)[source].flatten(2).amax(2).numpy()  # [N, C]
    saturated = 0
    for channel in (0, 5, 17):
        order = np.lexsort((np.arange(len(x)), -before[:, channel]))[:9]
        assert [e[1] for e in table.top(layer, channel)] == order.tolist(), channel
        np.testing.assert_allclose(table.ranked_by(layer, channel), before[order, channel], rtol=1e-4)
        saturated += sum(e[0] == 6.0 for e in table.top(layer, channel))
        examples = D.unit_examples(lite, table, lambda idx: x[idx], layer, channel)
        assert all(np.abs(e.projection).max() > 0 for e in examples), channel
    assert saturated >= 9  # the case of the issue: at the ceiling, the clamped values alone cannot rank


# ---- what the page opens on and what it says --------------------------------------------------


@pytest.mark.parametrize(
    "name", ["fashion", pytest.param("vgg", marks=pytest.mark.slow), pytest.param("lite", marks=pytest.mark.slow)]
)
def test_default_layer_is_the_deepest_rectified_map_whose_field_fits_in_half_the_image(
    request: pytest.FixtureRequest, name: str
) -> None:
    model = request.getfixturevalue(name)
    layers = D.unit_layers(model)
    chosen = D.default_layer(model, layers)
    half = model.input_size / 2
    row = model.layer(chosen)
    assert row.kind == "relu" and row.spatial and row.rf <= half
    later = layers[layers.index(chosen) + 1 :]
    assert all(model.layer(n).rf is None or model.layer(n).rf > half for n in later if model.layer(n).kind == "relu")
    expected = {"fashion": "relu2_2", "vgg": "relu4_3", "lite": "stage4.block2.expand_relu"}[name]
    assert chosen == expected


def test_border_note_when_most_best_fields_reach_into_the_padding(fashion: LoadedModel) -> None:
    layer = "conv2_1"  # 10x10 fields, 2 px apart on the 28 px image: units at the map's edge overhang it
    inside = [D.receptive_box(fashion, layer, 7, 7)] * 4
    assert not D.reaches_padding(fashion, inside[0])
    edge = [D.receptive_box(fashion, layer, y, x) for y, x in ((0, 7), (7, 13), (13, 0))]
    assert all(D.reaches_padding(fashion, box) for box in edge)
    assert D.border_note(fashion, layer, inside + edge[:2] * 2 + edge[2:]).startswith("5 of these 9")
    assert D.border_note(fashion, layer, inside * 2 + edge[:1]) is None  # 1 of 9
    assert D.border_note(fashion, layer, inside + edge[:2] * 2) is None  # 4 of 8: not most
    assert D.border_note(fashion, "fc3", [D.receptive_box(fashion, "fc3", 0, 0)] * 9) is None  # sees the whole image


def test_label_chart_counts_well_below_each_labels_share() -> None:
    fashion_labels = [str(i % 10) for i in range(10_000)]
    assert D.label_chart_top(fashion_labels, k=100) == 100
    assert D.label_chart_top(fashion_labels, k=40) == 40  # never more than the table holds
    assert D.label_chart_top(fashion_labels[:120], k=100) is None  # 12 a label: a bar could never pass 12
    assert D.label_chart_top(["cats"] * 30 + ["dogs"] * 80, k=100) == 15  # half the smaller folder
    assert D.label_chart_top(["cats"] * 19 + ["dogs"] * 80, k=100) is None
    assert D.label_chart_top(["cats"] * 300, k=100) is None  # one label: nothing to compare
    assert D.count_labels(["b", "a", "b", "c", "a", "b"]) == {"b": 3, "a": 2, "c": 1}
