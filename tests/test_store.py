"""The on-disk store of computed results: once per key, keyed by the weights, damage means recompute."""

from __future__ import annotations

import copy
import dataclasses
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from app.analyses import dataset_examples as D
from app.networks.loaded import LoadedModel
from app.serving import store


@dataclasses.dataclass
class Net:
    name: str
    weights: str

    def digest(self) -> str:
        return self.weights


@pytest.fixture
def folder(monkeypatch, tmp_path):
    monkeypatch.setenv("CNN_LENS_CACHE", str(tmp_path))
    return tmp_path


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value

    return compute, calls


def test_computed_once_then_read_from_disk(folder):
    compute, calls = _counting({"a": np.arange(5)})
    first = store.kept("thing", Net("n", "w1"), compute, version=1)
    again = store.kept("thing", Net("n", "w1"), compute, version=1)
    assert len(calls) == 1 and np.array_equal(again["a"], first["a"])
    assert [p.suffix for p in folder.iterdir()] == [".pkl"]  # no temporary file left behind


def test_new_weights_version_or_spec_recompute(folder):
    compute, calls = _counting(1)
    store.kept("thing", Net("n", "w1"), compute, version=1, data="x")
    store.kept("thing", Net("n", "w2"), compute, version=1, data="x")  # new weights
    store.kept("thing", Net("n", "w1"), compute, version=2, data="x")  # a changed format
    store.kept("thing", Net("n", "w1"), compute, version=1, data="y")  # another data set
    store.kept("thing", None, compute, version=1, data="x")  # depends on no network
    assert len(calls) == 5 and len(list(folder.iterdir())) == 5


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # cut short (a full disk)
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # one bit flipped
        lambda b: b"",  # empty
        lambda b: b"not ours at all",
    ],
)
def test_a_damaged_file_is_recomputed_and_rewritten_never_read(folder, damage):
    compute, calls = _counting(list(range(1000)))
    store.kept("thing", Net("n", "w"), compute, version=1)
    (path,) = folder.iterdir()
    path.write_bytes(damage(path.read_bytes()))
    assert store.read_stored("thing", Net("n", "w"), version=1) is None
    assert store.has("thing", Net("n", "w"), version=1)  # there, but damaged: only reading tells
    assert store.kept("thing", Net("n", "w"), compute, version=1) == list(range(1000))
    assert len(calls) == 2
    assert store.read_stored("thing", Net("n", "w"), version=1) == list(range(1000))  # whole again


def test_keep_false_neither_reads_nor_writes(folder):
    compute, calls = _counting(3)
    store.kept("thing", Net("n", "w"), compute, version=1)
    assert store.kept("thing", Net("n", "w"), compute, keep=False, version=1) == 3
    assert len(calls) == 2 and len(list(folder.iterdir())) == 1


def test_a_read_only_folder_still_answers(monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    monkeypatch.setenv("CNN_LENS_CACHE", str(blocked))
    compute, calls = _counting(7)
    assert store.kept("thing", Net("n", "w"), compute, version=1) == 7
    assert store.kept("thing", Net("n", "w"), compute, version=1) == 7
    assert len(calls) == 2


def test_threads_asking_at_once_share_one_computation(folder):
    calls, gate = [], threading.Event()

    def compute():
        calls.append(1)
        gate.wait(5)
        return "done"

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(store.kept("slow", Net("n", "w"), compute, version=1)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(30)
    assert results == ["done"] * 4 and len(calls) == 1


def test_writes_counts_only_what_was_computed(folder):
    before = store.writes()
    store.kept("thing", Net("n", "w"), lambda: 1, version=1)
    store.kept("thing", Net("n", "w"), lambda: 1, version=1)
    assert store.writes() == before + 1


def test_a_changed_weight_recomputes_a_unit_table_and_a_truncated_one_is_recomputed(
    folder, fashion_untrained: LoadedModel, monkeypatch
):
    """The real results: a unit table of a few Fashion-MNIST images, stored per set of weights."""
    images = [torch.rand(28, 28) for _ in range(6)]
    first = D.images_table(fashion_untrained, _pil(images), keep_as="six")
    (path,) = folder.glob("units_*.npz")
    changed = dataclasses.replace(fashion_untrained, module=copy.deepcopy(fashion_untrained.module))
    with torch.no_grad():
        changed.module.classifier[2].weight[0, 0] += 1.0  # one weight of the last layer
    retrained = D.images_table(changed, _pil(images), keep_as="six")
    assert len(list(folder.glob("units_*.npz"))) == 2  # computed again, under the new digest
    assert not np.array_equal(retrained.values["fc4"], first.values["fc4"])

    path.write_bytes(path.read_bytes()[:-10])
    computed = []
    real = D.top_units_table
    monkeypatch.setattr(D, "top_units_table", lambda *a, **k: computed.append(1) or real(*a, **k))
    again = D.images_table(fashion_untrained, _pil(images), keep_as="six")
    assert computed == [1] and np.array_equal(again.values["fc4"], first.values["fc4"])


def _pil(grey: list[torch.Tensor]) -> list[Image.Image]:
    return [Image.fromarray((g.numpy() * 255).astype(np.uint8)).convert("RGB") for g in grey]
