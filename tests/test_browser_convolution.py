"""Real browser, real server: the convolution animation plays in the browser without asking the server for
anything. Plotly's own Play button moves the step slider and redraws the window and output, while the
browser sends Streamlit no message at all (each frame would otherwise be a rerun for every watching student)."""

from __future__ import annotations

import re
import time

import pytest

from tests.browser import IDLE, SETTLED, chromium_page, wait_for_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _current(chart):
    """The slider's "Step n of N" line (Plotly draws it as the container's first label)."""
    return chart.locator(".slider-container text.slider-label").first


def _step(chart) -> int:
    return int(re.search(r"Step (\d+) of", _current(chart).text_content()).group(1))


def test_play_animates_in_the_browser_with_no_rerun(tmp_path, app_url):
    sent: list[float] = []
    with chromium_page(1400, 1200) as page:
        page.on("websocket", lambda ws: ws.on("framesent", lambda _: sent.append(time.monotonic())))
        page.goto(app_url, wait_until="networkidle")
        page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click(timeout=120_000)
        page.get_by_role("option", name="Fashion-MNIST CNN").click()
        wait_for_run(page)
        page.get_by_role("link", name="Convolution, step by step").first.click()
        wait_for_run(page)
        page.wait_for_function(SETTLED, timeout=120_000)
        chart = page.locator("[data-testid=stMain] .js-plotly-plot").first
        _current(chart).wait_for(timeout=60_000)
        assert _step(chart) == 1
        words = chart.locator("g.textpoint").all_text_contents()
        page.wait_for_timeout(500)
        before = len(sent)
        chart.locator("g.updatemenu-button", has_text="10/s").click()
        start = time.monotonic()
        # Frames are 100 ms apart (the AppTest checks the setting); how many the browser really shows per
        # second depends on how busy the machine is, so this waits for frames to advance, not for a rate.
        while _step(chart) < 9 and time.monotonic() - start < 60:
            page.wait_for_timeout(100)
        played = _step(chart) - 1
        seconds = time.monotonic() - start
        chart.locator("g.updatemenu-button", has_text="Pause").click()
        page.wait_for_timeout(300)
        paused = _step(chart)
        page.wait_for_timeout(600)
        assert _step(chart) == paused  # Pause stops it
        assert chart.locator("g.textpoint").all_text_contents() != words  # the products and the sum change too
        assert page.evaluate(IDLE)
        print(f"{played} steps in {seconds:.2f} s = {played / seconds:.1f} steps/s; messages sent {len(sent) - before}")
        assert played >= 8, played  # it played on by itself
        assert len(sent) == before, "the browser talked to the server while the animation played"
        page.screenshot(path=str(tmp_path / "playing.png"))
