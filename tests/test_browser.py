"""Real browser, real server: upload a PNG and see the prediction."""

from __future__ import annotations

import pytest

from app.models import get_model
from tests.browser import chromium_page, streamlit_server
from tests.conftest import photo, png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_upload_png_shows_prediction(tmp_path):
    image = photo((28, 28), seed=3)
    model = get_model("fashion_cnn")
    expected = model.top_k(model.preprocess(image), k=1)[0][0]
    upload = tmp_path / "shirt.png"
    upload.write_bytes(png_bytes(image))
    with streamlit_server() as url, chromium_page() as page:
        page.goto(url, wait_until="networkidle")
        page.get_by_text("Fashion-MNIST CNN").first.wait_for(timeout=60_000)
        page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click()
        page.get_by_role("option", name="Fashion-MNIST CNN").click()
        page.get_by_text("Upload", exact=True).click()
        page.locator("input[type=file]").set_input_files(str(upload))
        page.get_by_text("Top-1:").wait_for(timeout=90_000)
        page.get_by_text(expected).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(tmp_path / "prediction.png"), full_page=True)
        assert f"Top-1: {expected}" in page.inner_text("body")
    assert (tmp_path / "prediction.png").stat().st_size > 10_000
