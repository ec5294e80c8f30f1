"""Real browser, real server: the "What units look for" page on (the first 500 images of) the Fashion-MNIST
test set, the 9-patch view and the layer overview screenshotted (kept in pytest's tmp dir to look at)."""

from __future__ import annotations

import pytest

from tests.browser import SETTLED, chromium_page, fashion_subset, streamlit_server, wait_for_run, wait_while_progressing

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_units_page_shows_nine_patches_and_the_layer_overview(tmp_path):
    with (
        streamlit_server(env={"CNN_LENS_DATA": str(fashion_subset(tmp_path / "data", 500))}) as url,
        chromium_page(1400, 3400) as page,
    ):
        page.goto(url, wait_until="networkidle")
        page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click(timeout=120_000)
        page.get_by_role("option", name="Fashion-MNIST CNN").click()
        wait_for_run(page)
        page.get_by_role("link", name="What units look for").first.click()
        wait_for_run(page)
        wait_while_progressing(page, page.get_by_text("Layer overview"))
        page.wait_for_function(SETTLED, timeout=120_000)
        page.wait_for_timeout(2500)
        main = page.locator("[data-testid=stMain]")
        grid = main.locator("[data-testid=stImage]")
        captions = [c for c in main.inner_text().splitlines() if c.startswith("#") and " · image " in c]
        assert len(captions) == 9, captions
        assert grid.count() >= 10  # the nine pairs and the user's own patch
        page.screenshot(path=str(tmp_path / "units.png"), full_page=True)
        overview = main.locator(".js-plotly-plot").last
        overview.screenshot(path=str(tmp_path / "overview.png"))
        assert overview.locator("text.annotation-text").count() == 64  # channels 0-63 of relu2_2, numbered
    assert (tmp_path / "units.png").stat().st_size > 50_000
    assert (tmp_path / "overview.png").stat().st_size > 20_000
