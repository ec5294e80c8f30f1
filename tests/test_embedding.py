"""Feature space: features equal a hand-run forward pass, maps and neighbours match
independent oracles (NumPy brute force, SVD, scikit-learn's trustworthiness), and the
trained Fashion CNN's features group the test set far better than raw pixels do."""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import os
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.manifold import trustworthiness

from app.analyses import embedding as E
from app.analyses.embedding import Map, features, nearest, pca_map, penultimate_layer, pixels, tsne_map
from app.networks.datasets import load_fashion_mnist
from app.networks.images import collection_image, load_collection, load_image
from tests.conftest import photo, png_bytes


def _by_hand(model, x: torch.Tensor) -> np.ndarray:
    """Run the network's own submodules up to (not including) the last linear layer, in fp32."""
    net = model.module
    with torch.no_grad():
        h = net.features(x)
        if hasattr(net, "avgpool"):
            h = torch.flatten(net.avgpool(h), 1)
        return net.classifier[:-1](h).numpy()


def _brute(query: np.ndarray, feats: np.ndarray, metric: str) -> np.ndarray:
    q, f = query.astype(np.float64), feats.astype(np.float64)
    if metric == "l1":
        return np.abs(q[:, None, :] - f[None]).sum(-1)
    if metric == "l2":
        return np.sqrt(((q[:, None, :] - f[None]) ** 2).sum(-1))
    cos = np.zeros((len(q), len(f)))
    for i, a in enumerate(q):
        for j, b in enumerate(f):
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            cos[i, j] = a @ b / (na * nb) if na > 0 and nb > 0 else 0.0
    return 1 - cos


def _clusters(n_per: int = 60, centres: int = 3, dim: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(8 * c, 1, (n_per, dim)) for c in range(centres)])
    return x.astype(np.float32), np.repeat(np.arange(centres), n_per)


def _majority(labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.array([np.bincount(labels[row]).argmax() for row in idx])


# --- features ---------------------------------------------------------------------------------


def test_penultimate_layer_is_the_input_of_the_last_fc(vgg, fashion_untrained):
    assert penultimate_layer(vgg) == "dropout7" and vgg.layer("dropout7").out_shape == (4096,)
    assert penultimate_layer(fashion_untrained) == "dropout3"
    assert fashion_untrained.layer("dropout3").out_shape == (128,)


def test_fashion_features_equal_forward_by_hand_for_every_input_form(fashion_untrained):
    model = fashion_untrained
    images, _ = load_fashion_mnist("test")
    raw = images[:40]
    x = torch.cat([model.preprocess(Image.fromarray(im.numpy())) for im in raw])
    expected = _by_hand(model, x)
    from_uint8 = features(model, raw, batch_size=16, precision="fp32")
    from_pil = features(model, [Image.fromarray(im.numpy()) for im in raw], precision="fp32")
    from_tensor = features(model, x, precision="fp32")
    assert from_uint8.shape == (40, 128) and from_uint8.dtype == np.float32
    for got in (from_uint8, from_pil, from_tensor):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # the model's own precision (bf16 where the CPU has it) stays close to fp32
    auto = features(model, raw)
    assert np.abs(auto - expected).max() <= 0.05 * np.abs(expected).max()


def test_vgg_features_equal_forward_by_hand(vgg):
    pictures = [photo((260, 200), seed=s) for s in range(2)]
    expected = _by_hand(vgg, torch.cat([vgg.preprocess(p) for p in pictures]))
    got = features(vgg, pictures, precision="fp32")
    assert got.shape == (2, 4096)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_features_report_progress_and_reject_wrong_shapes(fashion_untrained):
    images, _ = load_fashion_mnist("test")
    calls = []
    features(fashion_untrained, images[:50], batch_size=20, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(20, 50), (40, 50), (50, 50)]
    with pytest.raises(ValueError):
        features(fashion_untrained, torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError):
        features(fashion_untrained, torch.zeros(3, 3, 28, 28))


def test_threads_get_sequential_features_and_module_is_untouched(fashion_untrained):
    model = fashion_untrained
    images, _ = load_fashion_mnist("test")
    chunks = [images[i * 32 : (i + 1) * 32] for i in range(6)]
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    sequential = [features(model, c) for c in chunks]
    with ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(lambda c: features(model, c), chunks))
    for a, b in zip(sequential, parallel, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.module.modules())
    for k, v in model.module.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_pixels_are_the_model_input_in_0_to_1(fashion_untrained):
    images, _ = load_fashion_mnist("test")
    got = pixels(fashion_untrained, images[:5])
    np.testing.assert_allclose(got, images[:5].reshape(5, -1).numpy() / 255, atol=1e-6)
    small = pixels(fashion_untrained, images[:5], size=14)  # 2x2 block means
    blocks = images[:5].numpy().reshape(5, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(5, -1) / 255
    np.testing.assert_allclose(small, blocks, atol=1e-6)


def test_predict_from_features_equals_the_network_output(fashion_untrained, vgg):
    images, _ = load_fashion_mnist("test")
    x = torch.cat([fashion_untrained.preprocess(Image.fromarray(im.numpy())) for im in images[:30]])
    feats = features(fashion_untrained, x, precision="fp32")
    expected = fashion_untrained.logits(x, "fp32").argmax(1).numpy()
    np.testing.assert_array_equal(E.predict(fashion_untrained, feats), expected)
    assert E.predict(vgg, np.zeros((2, 4096), dtype=np.float32)).shape == (2,)


def test_a_query_gets_the_vector_its_copy_in_a_collection_gets(vgg, fashion_untrained):
    """The same picture as the query and as a collection member (other bytes) gets the same pixels and,
    to rounding, the same features and prediction; its copy is its nearest neighbour. Only to rounding: the
    copy sits in the middle of a batch and the query is alone, and oneDNN's kernels depend on batch size and
    threads (8.5e-07 apart on a busy machine), so "same image" is found by content (Collection.find), never
    by a distance of exactly 0. The photo is larger than the collection's 512 px."""
    big = photo((700, 500), seed=3)
    files = [(f"{i}.png", png_bytes(photo((300, 200), seed=i))) for i in range(4)]
    files.insert(2, ("copy.png", png_bytes(big)))
    query = io.BytesIO()
    big.save(query, format="PNG", compress_level=1)
    assert query.getvalue() != files[2][1]
    collection = load_collection(files)
    assert collection.find(query.getvalue()) == 2  # the same picture, found by its pixels
    assert collection.find(files[2][1]) == 2 and collection.find(png_bytes(photo((90, 70), seed=9))) is None
    images = collection.images
    for model in (vgg, fashion_untrained):
        feats, preds, pix = E.collection_vectors(model, images)
        q_feats, q_preds, q_pix = E.collection_vectors(model, [collection_image(query.getvalue())])
        np.testing.assert_allclose(q_feats[0], feats[2], rtol=1e-4, atol=1e-5 * np.abs(feats[2]).max())
        np.testing.assert_array_equal(q_pix[0], pix[2])  # pixels are integers until scaled: exact
        assert q_preds[0] == preds[2]
        for metric in E.METRICS:
            idx, dist = nearest(q_feats[0], feats, 2, metric)
            assert idx[0] == 2 and dist[0] < 1e-3 * dist[1], (model.name, metric, dist)
        # what the page did before: the image at its own size, apart from the collection
        far = features(model, [load_image(query.getvalue())])[0]
        assert not np.allclose(far, feats[2], rtol=1e-4, atol=1e-5 * np.abs(feats[2]).max())


def test_labels_from_folder_names():
    assert E.labels_from_names(["cats/a.jpg", "dogs/b.png", "x/cats/c.jpg"]) == ["cats", "dogs", "cats"]
    assert E.labels_from_names(["cats/a.jpg", "b.png"]) is None  # not every file has a folder
    assert E.labels_from_names(["all/a.jpg", "all/b.jpg"]) is None  # one folder says nothing


# --- nearest neighbours -----------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
def test_nearest_equals_numpy_brute_force(metric):
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(300, 16)).astype(np.float32)
    feats[10] = feats[20]  # an exact tie: the lower index comes first
    feats[30] = 0  # a zero vector (possible after ReLU)
    queries = np.concatenate([rng.normal(size=(7, 16)), feats[[20, 30]]]).astype(np.float32)
    d = _brute(queries, feats, metric)
    idx, dist = nearest(queries, feats, 12, metric)
    np.testing.assert_array_equal(idx, np.argsort(d, axis=1, kind="stable")[:, :12])
    np.testing.assert_allclose(dist, np.sort(d, axis=1)[:, :12], rtol=1e-12, atol=1e-12)
    one_idx, one_dist = nearest(queries[0], feats, 5, metric)
    np.testing.assert_array_equal(one_idx, idx[0, :5])
    np.testing.assert_allclose(one_dist, dist[0, :5])
    # excluding the query's own row
    ex_idx, _ = nearest(feats[:4], feats, 3, metric, exclude=np.arange(4))
    d_own = _brute(feats[:4], feats, metric)
    d_own[np.arange(4), np.arange(4)] = np.inf
    np.testing.assert_array_equal(ex_idx, np.argsort(d_own, axis=1, kind="stable")[:, :3])


def test_nearest_tie_and_metric_checks():
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    idx, dist = nearest(np.array([1.0, 0.0]), feats, 3, "l2")
    assert idx.tolist() == [0, 2, 1] and dist.tolist() == [0.0, 0.0, np.sqrt(2)]
    idx, _ = nearest(np.array([1.0, 0.0]), feats, 5, "l1", exclude=0)
    assert idx.tolist() == [2, 1]
    with pytest.raises(ValueError):
        nearest(feats[0], feats, 1, "hamming")


# --- maps ---------------------------------------------------------------------------------------


def test_pca_map_matches_svd():
    x, _ = _clusters()
    m = pca_map(x)
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    signs = np.sign((m.coords * expected).sum(0))  # each axis is defined up to sign
    np.testing.assert_allclose(m.coords * signs, expected, atol=1e-8)
    np.testing.assert_allclose(m.explained_variance_ratio, (s**2 / (s**2).sum())[:2], rtol=1e-8)
    np.testing.assert_allclose(m.transform(x[:5]), m.coords[:5], atol=1e-8)
    assert m.method == "pca"


def test_tsne_map_separates_clusters_places_new_points_and_pickles():
    x, labels = _clusters()
    calls = []
    m = tsne_map(x, perplexity=20, progress=lambda d, t: calls.append((d, t)))
    assert m.coords.shape == (180, 2) and m.method == "tsne" and m.params == {"perplexity": 20.0, "seed": 0}
    assert calls[0] == (0, 800) and calls[-1] == (800, 800)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    assert trustworthiness(x, m.coords, n_neighbors=10) > 0.9  # noise inside a cluster has no 2-D layout
    new, new_labels = _clusters(n_per=5, seed=1)
    before = m.coords.copy()
    placed = m.transform(new)
    np.testing.assert_array_equal(m.coords, before)  # the map itself never moves
    idx, _ = nearest(placed, m.coords, 10, "l2")
    assert (_majority(labels, idx) == new_labels).all()
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.coords, m.coords)
    np.testing.assert_allclose(again.transform(new), placed)


def test_tsne_map_caps_perplexity_for_small_collections():
    x, _ = _clusters(n_per=4)
    m = tsne_map(x, perplexity=30)
    assert m.params["perplexity"] == pytest.approx(11 / 3)
    assert np.isfinite(m.coords).all()


# --- stored Fashion-MNIST map ----------------------------------------------------------------


@pytest.fixture
def small_test_set(monkeypatch, tmp_path):
    images, labels = load_fashion_mnist("test")
    monkeypatch.setattr(E, "load_fashion_mnist", lambda split: (images[:150], labels[:150]))
    monkeypatch.setenv("CNN_LENS_CACHE", str(tmp_path))
    return tmp_path


def test_fashion_map_is_computed_once_then_loaded(small_test_set, fashion_untrained, monkeypatch):
    calls = []
    m, labels, feats = E.fashion_test_map(fashion_untrained, "pca", progress=lambda d, t: calls.append((d, t)))
    assert isinstance(m, Map) and m.coords.shape == (150, 2) and feats.shape == (150, 128)
    assert calls[-1] == (450, 450)
    files = os.listdir(small_test_set)
    assert len(files) == 1 and files[0].endswith(".pkl")  # no temporary file left behind

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of loading")

    monkeypatch.setattr(E, "features", fail)
    m2, labels2, feats2 = E.fashion_test_map(fashion_untrained, "pca")
    np.testing.assert_array_equal(m2.coords, m.coords)
    np.testing.assert_array_equal(labels2, labels)
    np.testing.assert_array_equal(feats2, feats)


def test_fashion_map_key_follows_weights_method_and_params(small_test_set, fashion_untrained):
    E.fashion_test_map(fashion_untrained, "pca")
    E.fashion_test_map(fashion_untrained, "tsne", {"perplexity": 10})
    E.fashion_test_map(fashion_untrained, "tsne", {"perplexity": 20})
    assert len(os.listdir(small_test_set)) == 3
    retrained = dataclasses.replace(fashion_untrained, module=copy.deepcopy(fashion_untrained.module))
    with torch.no_grad():
        retrained.module.classifier[2].bias.add_(1.0)
    assert retrained.digest() != fashion_untrained.digest()
    E.fashion_test_map(retrained, "pca")
    assert len(os.listdir(small_test_set)) == 4


def test_keep_false_never_writes(small_test_set, fashion_untrained):
    m, _, _ = E.fashion_test_map(fashion_untrained, "pca", keep=False)
    assert m.coords.shape == (150, 2) and not any(small_test_set.iterdir())


def test_broken_store_file_is_recomputed(small_test_set, fashion_untrained):
    m, _, _ = E.fashion_test_map(fashion_untrained, "pca")
    (path,) = small_test_set.iterdir()
    whole = path.read_bytes()
    path.write_bytes(whole[:-100])  # cut short, as by a full disk
    m2, _, _ = E.fashion_test_map(fashion_untrained, "pca")
    np.testing.assert_allclose(m2.coords, m.coords)
    assert E.is_stored(fashion_untrained, "pca") and path.stat().st_size == len(whole)  # written again, whole


# --- quality on the trained Fashion-MNIST CNN --------------------------------------------------


@pytest.fixture(scope="module")
def test_set_features(fashion):
    images, labels = load_fashion_mnist("test")
    return features(fashion, images), labels.numpy(), pixels(fashion, images)


@pytest.mark.slow
def test_penultimate_neighbours_share_labels_far_more_than_pixel_neighbours(test_set_features):
    feats, labels, pix = test_set_features
    queries = np.random.default_rng(0).choice(len(feats), 1000, replace=False)
    scores = {}
    for name, space in (("features", feats), ("pixels", pix)):
        idx, _ = nearest(space[queries], space, 10, "l2", exclude=queries)
        scores[name] = float((labels[idx] == labels[queries, None]).mean())
    print(f"same-label fraction of 10 NN: {scores}")
    assert scores["features"] >= 0.88
    assert scores["pixels"] < scores["features"]


@pytest.mark.slow
def test_tsne_map_is_trustworthy_and_places_held_out_images_in_their_class(test_set_features):
    feats, labels, _ = test_set_features
    order = np.random.default_rng(0).permutation(len(feats))
    base, held = order[:2000], order[2000:2500]
    m = tsne_map(feats[base])
    trust = trustworthiness(feats[base], m.coords, n_neighbors=10)
    placed = m.transform(feats[held])
    idx, _ = nearest(placed, m.coords, 10, "l2")
    hit = float((_majority(labels[base], idx) == labels[held]).mean())
    print(f"trustworthiness {trust:.4f}, held-out placed in own class {hit:.3f}")
    assert trust >= 0.95
    assert hit >= 0.85
