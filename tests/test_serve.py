"""Warm at start (scripts/serve.py) and the teacher's list of offered models ($CNN_LENS_OFFER)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from app.networks.models import MODEL_NAMES, OFFER_ENV, offered_models
from benchmarks.protocol import Run, Student
from benchmarks.server import pinned_server
from tests.browser import REPO, streamlit_server

LOADING = "Loading the models (first visit only)…"  # pages/cache.py's spinner while a run loads them


def test_every_model_is_offered_by_default(monkeypatch):
    monkeypatch.delenv(OFFER_ENV, raising=False)
    monkeypatch.delenv("CNN_LENS_MODELS", raising=False)
    assert offered_models() == (MODEL_NAMES, [])


def test_an_offer_keeps_the_registry_order(monkeypatch):
    monkeypatch.delenv("CNN_LENS_MODELS", raising=False)
    monkeypatch.setenv(OFFER_ENV, " fashion_cnn, efficientnet_lite0 ")
    names, problems = offered_models()
    assert list(names) == ["efficientnet_lite0", "fashion_cnn"] and problems == []
    assert names["fashion_cnn"] == MODEL_NAMES["fashion_cnn"]


def test_unknown_offered_names_are_reported_and_left_out(monkeypatch):
    monkeypatch.delenv("CNN_LENS_MODELS", raising=False)
    monkeypatch.setenv(OFFER_ENV, "fashion_cnn,resnet50")
    names, problems = offered_models()
    assert list(names) == ["fashion_cnn"]
    assert problems == [
        "CNN_LENS_OFFER names resnet50, which this server does not have (it has: vgg16, efficientnet_lite0, "
        "fashion_cnn)."
    ]
    monkeypatch.setenv(OFFER_ENV, "vgg")  # nothing left: every model, and the sidebar says why
    names, problems = offered_models()
    assert names == MODEL_NAMES and problems[0].endswith("every model is offered.")


def test_a_broken_config_file_leaves_the_shipped_models(monkeypatch, tmp_path):
    bad = tmp_path / "models.toml"
    bad.write_text("[x\n")
    monkeypatch.setenv("CNN_LENS_MODELS", str(bad))
    monkeypatch.setenv(OFFER_ENV, "fashion_cnn")
    names, problems = offered_models()
    assert list(names) == ["fashion_cnn"] and problems[0].startswith("Extra models are off: Cannot read")


def test_the_launcher_refuses_an_unknown_name():
    env = {**os.environ, OFFER_ENV: "fashion_cnn,fashoin_cnn"}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.serve"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2
    assert "CNN_LENS_OFFER names fashoin_cnn, which this server does not have" in done.stderr


def _first_run(url: str) -> tuple[Run, list[str]]:
    async def visit() -> tuple[Run, list[str]]:
        student = Student(url, timeout=300)
        try:
            run = await student.connect()
            return run, student.widget("Model", "selectbox", sidebar=True).options
        finally:
            await student.close()

    return asyncio.run(visit())


@pytest.mark.slow
def test_a_warm_server_answers_its_first_page_without_loading_a_model():
    """Started by the launcher, the first run shows no loading spinner; started by plain
    `streamlit run`, the same first run loads the model (the control: the check can fail)."""
    env = {OFFER_ENV: "fashion_cnn"}
    with pinned_server(os.sched_getaffinity(0), env) as server:
        warm, options = _first_run(server.url)
    assert warm.finished and not warm.exceptions and not warm.error_alerts, warm
    assert LOADING not in warm.spinners
    assert options == [MODEL_NAMES["fashion_cnn"]]  # the sidebar offers only what the teacher listed
    # The control loads VGG-16 (seconds even untrained): Streamlit shows a cache spinner only after a
    # short delay, which a quiet machine loads the small Fashion CNN within.
    with streamlit_server(env={OFFER_ENV: "vgg16"}) as url:
        cold, _ = _first_run(url)
    assert cold.finished and LOADING in cold.spinners
