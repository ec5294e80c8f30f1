"""Real browser, real server: every tab of the Dreams page runs a short dream to its download button.

Screenshots of each tab (and of a failure) go to $CNN_LENS_SCREENSHOTS (default: a new temporary folder).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.browser import SETTLED, chromium_page, wait_for_run, wait_while_progressing

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_run(page)


def _dream(page, tab: str, button: str, out: Path, name: str, settings=None) -> None:
    """Open `tab`, apply settings, press the button, wait for the finished picture, screenshot."""
    page.get_by_role("tab", name=tab).click()
    wait_for_run(page)
    panel = page.get_by_role("tabpanel")
    if settings:
        settings(panel)
    panel.get_by_role("button", name=button).click()
    wait_while_progressing(page, panel.get_by_role("button", name="Download PNG"))
    wait_for_run(page)
    page.wait_for_function(SETTLED, timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out / f"dreams_{name}.png"), full_page=True)


def _lower(**presses: int):
    """Settings that move sliders down by some options (the keyboard moves one option per key press),
    so each dream is short: the test is about the page working, not about the pictures."""
    labels = {"size": "Size (px)", "steps": "Steps", "strength": "Strength (steps per octave)"}

    def apply(panel) -> None:
        for name, count in presses.items():
            slider = panel.locator("[data-testid=stSlider]").filter(has_text=labels[name]).first
            thumb = slider.get_by_role("slider")
            thumb.focus()
            for _ in range(count):
                thumb.press("ArrowLeft")

    return apply


def _open_dreams(page, url: str, model_title: str) -> None:
    page.goto(url, wait_until="networkidle")
    page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click(timeout=120_000)
    page.get_by_role("option", name=model_title).click()
    wait_for_run(page)
    page.get_by_role("link", name="Dreams").first.click()
    page.get_by_text("Dreams: pictures the network makes").wait_for(timeout=120_000)
    wait_for_run(page)


def _screenshots() -> Path:
    out = Path(os.environ.get("CNN_LENS_SCREENSHOTS", tempfile.mkdtemp(prefix="dreams_")))
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_fashion_tabs_dream_in_the_browser(app_url: str) -> None:
    out = _screenshots()
    with chromium_page(1400, 1900) as page:
        try:
            _open_dreams(page, app_url, "Fashion-MNIST CNN")
            _dream(page, "Feature visualisation", "Dream", out, "fashion_features", _lower(steps=1))
            _dream(page, "Class model", "Dream", out, "fashion_class", _lower(steps=1))
            assert "What the network now predicts" in page.inner_text("body")
            _dream(page, "DeepDream", "Dream", out, "fashion_deepdream", _lower(strength=5))
            page.get_by_role("tab", name="Style transfer").click()
            page.get_by_text("Not offered for this network").wait_for(timeout=60_000)
            page.screenshot(path=str(out / "dreams_fashion_style.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(out / "dreams_fashion_failure.png"), full_page=True)
            raise
    for name in ("fashion_features", "fashion_class", "fashion_deepdream", "fashion_style"):
        assert (out / f"dreams_{name}.png").stat().st_size > 20_000


def test_vgg_style_transfer_paints_in_the_browser(app_url: str) -> None:
    out = _screenshots()
    with chromium_page(1400, 1900) as page:
        try:
            _open_dreams(page, app_url, "VGG-16 (ImageNet)")
            _dream(page, "Style transfer", "Paint", out, "vgg_style", _lower(size=1, steps=2))
        except Exception:
            page.screenshot(path=str(out / "dreams_vgg_failure.png"), full_page=True)
            raise
    assert (out / "dreams_vgg_style.png").stat().st_size > 20_000
