"""Dreams made once, ever: a stored dream is served without optimising again, the key follows every
setting and the weights, a damaged file is made again; EfficientNet-Lite0 dreams report from step 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.analyses import dream_store, dreams
from app.networks.models import LoadedModel
from app.serving import jobs


@pytest.fixture
def store(monkeypatch, tmp_path):
    monkeypatch.setenv("CNN_LENS_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def adam_steps(monkeypatch) -> list[int]:
    """Counts the optimiser's steps: the spy that tells a made dream from a stored one."""
    steps: list[int] = []
    step = torch.optim.Adam.step

    def counted(self, *args, **kwargs):
        steps.append(1)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    return steps


def _visualise(model: LoadedModel, seed: int = 0, steps: int = 8):
    path = dream_store.dream_path(model, "features", layer="relu2_1", channel=3, size=28, steps=steps, seed=seed)
    return path, lambda: dreams.visualise(model, "relu2_1", 3, 28, steps, seed)


def test_a_stored_dream_is_served_without_optimising_again(fashion: LoadedModel, store, adam_steps) -> None:
    path, make = _visualise(fashion)
    first = dream_store.made_once(path, make)
    assert len(adam_steps) == 8 and path.exists() and path.parent == store
    again = dream_store.made_once(path, make)
    assert len(adam_steps) == 8  # read, not made
    assert np.array_equal(again.image, first.image) and again.history == first.history
    assert (again.steps, again.seconds) == (first.steps, first.seconds)
    assert again.png() == first.png()


class _Weights:
    """A stand-in network for the key: a name and the digest of its weights."""

    def __init__(self, name: str, digest: str) -> None:
        self.name, self._digest = name, digest

    def digest(self) -> str:
        return self._digest


def test_the_key_changes_with_the_seed_every_setting_and_the_weights(store) -> None:
    net = _Weights("vgg16", "a" * 64)
    base = {"layer": "relu4_2", "channel": 7, "size": 128, "steps": 128, "seed": 0}
    path = dream_store.dream_path(net, "features", **base)
    assert dream_store.dream_path(_Weights("vgg16", "a" * 64), "features", **base) == path
    others = [
        dream_store.dream_path(net, "features", **{**base, "seed": 1}),
        dream_store.dream_path(net, "features", **{**base, "steps": 256}),
        dream_store.dream_path(net, "features", **{**base, "channel": 8}),
        dream_store.dream_path(net, "class", **base),
        dream_store.dream_path(_Weights("vgg16", "b" * 64), "features", **base),
    ]
    assert len({path, *others}) == 6


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # cut short
        lambda data: b"not a dream at all",
        None,  # a whole file whose picture is not in [0, 1]
    ],
)
def test_a_damaged_file_is_made_again_never_shown(fashion: LoadedModel, store, adam_steps, damage) -> None:
    path, make = _visualise(fashion, seed=5, steps=4)
    good = dream_store.made_once(path, make)
    if damage is None:
        bad = dreams.Dream(good.image * 3 - 1, good.history, good.steps, good.seconds)
        path.write_bytes(dream_store.to_bytes(bad))
    else:
        path.write_bytes(damage(path.read_bytes()))
    assert dream_store.read(path) is None
    remade = dream_store.made_once(path, make)
    assert len(adam_steps) == 8 and np.array_equal(remade.image, good.image)
    assert dream_store.read(path) is not None  # and the file is whole again


def test_nothing_is_kept_without_a_path(fashion: LoadedModel, store, adam_steps) -> None:
    _, make = _visualise(fashion, steps=2)
    dream_store.made_once(None, make)
    dream_store.made_once(None, make)
    assert len(adam_steps) == 4 and not list(store.iterdir())


def test_an_efficientnet_dream_in_the_queue_reports_from_step_1_of_n(lite: LoadedModel) -> None:
    """Issue 20: its progress read "Step 0 of 0" and it did not finish in 15 minutes (OpenMP barriers on a
    busy machine; a job now runs with one PyTorch thread)."""
    reports: list[tuple[int, int]] = []

    def work(job: jobs.Job) -> dreams.Dream:
        def progress(done: int, total: int) -> None:
            reports.append((done, total))
            job.report(done, total)

        return dreams.visualise(lite, dreams.default_dream_layer(lite), 0, 64, 3, 0, progress)

    job = jobs.submit(work, "EfficientNet-Lite0", jobs.Slots(1))
    job.join(300)
    assert job.state == "finished", job.error
    assert reports == [(1, 3), (2, 3), (3, 3)] and job.result.image.shape == (64, 64, 3)
