"""Load test: N users at once upload an image and visit every page of a running app.

Starts the app on a loopback port (or uses --url), opens N independent browser
contexts in Debian's headless Chromium (one Streamlit session each), and for
each user: choose the model, upload a PNG, then open every page and wait until
it has finished computing. Prints p50/p95 time to a rendered page and for the
whole tour, the errors seen, and the server's peak RSS (VmHWM). Bounded: every
wait has a timeout and the run stops by itself.

    python -m benchmarks.load --users 10 [--model fashion_cnn] [--pages ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright

from app.networks.models import MODEL_NAMES
from scripts.screenshots import TITLES
from tests.browser import CHROMIUM, CHROMIUM_ARGS, IDLE, SETTLED, streamlit_server
from tests.conftest import photo, png_bytes

DEFAULT_PAGES = ["prediction", "activations", "filters", "attribution", "occlusion", "feature_space", "playground"]


async def _rerun(page, timeout_ms: int) -> None:
    """Wait like a person would after a click: for the run it asked for to start (if one shows
    within 3 s) and to finish. A loaded server may take a while to even start it."""
    with contextlib.suppress(PlaywrightTimeout):
        await page.wait_for_function(f"!({IDLE})", timeout=3000)
    await page.wait_for_function(IDLE, timeout=timeout_ms)


async def _until(page, act, done, timeout_ms: int) -> int:
    """Act until done() holds, as a person clicks again when a click did not take.

    Under load Streamlit's frontend sometimes drops a sidebar click (the widget flips
    back without a rerun); the extra tries are counted and reported, not hidden."""
    for tries in range(3):
        await act()
        await _rerun(page, timeout_ms)
        if await done():
            return tries
    raise RuntimeError("three tries did not take")


async def _settle(page, timeout_ms: int) -> None:
    await _rerun(page, timeout_ms)
    await page.locator("[data-testid=stMain] h1").first.wait_for(timeout=timeout_ms)
    await page.wait_for_function(SETTLED, timeout=timeout_ms)
    errors = await page.locator("[data-testid=stException]").count()
    if errors:
        raise RuntimeError("exception shown on the page")


async def _setup(page, url: str, model: str, upload: Path, timeout_ms: int) -> int:
    """Open the app, choose the model, upload the image; returns the clicks that had to be repeated."""
    sidebar = page.locator("[data-testid=stSidebar]")
    model_box = sidebar.get_by_test_id("stSelectbox").first
    upload_radio = sidebar.get_by_role("radio", name="Upload")
    await page.goto(url, timeout=timeout_ms)
    await _rerun(page, timeout_ms)

    async def choose_model() -> None:
        await model_box.click(timeout=timeout_ms)
        await page.get_by_role("option", name=MODEL_NAMES[model]).click(timeout=timeout_ms)

    async def model_chosen() -> bool:
        return await model_box.locator("input").first.input_value() == MODEL_NAMES[model]

    async def choose_upload() -> None:
        await sidebar.get_by_test_id("stRadio").first.get_by_text("Upload", exact=True).click(timeout=timeout_ms)

    async def send_file() -> None:
        await sidebar.locator("input[type=file]").set_input_files(str(upload), timeout=timeout_ms)

    async def file_used() -> bool:
        return await sidebar.get_by_text(f"Using {upload.name}").count() > 0

    repeats = await _until(page, choose_model, model_chosen, timeout_ms)
    repeats += await _until(page, choose_upload, upload_radio.is_checked, timeout_ms)
    return repeats + await _until(page, send_file, file_used, timeout_ms)


async def _user(
    browser, url: str, user: int, model: str, pages: list[str], upload: Path, timeout_ms: int, shots: Path | None
) -> dict:
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    times, errors, repeats, setup = {}, [], 0, float("nan")
    start = time.perf_counter()
    try:
        repeats = await _setup(page, url, model, upload, timeout_ms)
        setup = time.perf_counter() - start
        for name in pages:
            t = time.perf_counter()
            await page.get_by_role("link", name=TITLES[name]).first.click()
            try:
                await _settle(page, timeout_ms)
                times[name] = time.perf_counter() - t
            except Exception as exc:  # a timeout or an error on one page: count it, go on
                errors.append(f"user {user} {name}: {type(exc).__name__}: {str(exc)[:120]}")
                if shots is not None:
                    await page.screenshot(path=str(shots / f"user{user}_{name}.png"), full_page=True)
    except Exception as exc:
        errors.append(f"user {user}: {type(exc).__name__}: {str(exc)[:160]}")
        if shots is not None:
            await page.screenshot(path=str(shots / f"user{user}.png"), full_page=True)
    finally:
        await context.close()
    return {"pages": times, "tour": time.perf_counter() - start, "setup": setup, "repeats": repeats, "errors": errors}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: what the server spent, apart from the browsers."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _run(url: str, users: int, model: str, pages: list[str], timeout_ms: int, shots: Path | None) -> list[dict]:

    with tempfile.TemporaryDirectory() as tmp:
        uploads = []
        for u in range(users):
            path = Path(tmp) / f"user{u}.png"
            path.write_bytes(png_bytes(photo((300, 260), seed=u)))
            uploads.append(path)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                return await asyncio.gather(
                    *(_user(browser, url, u, model, pages, uploads[u], timeout_ms, shots) for u in range(users))
                )
            finally:
                await browser.close()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--model", choices=list(MODEL_NAMES), default="fashion_cnn")
    parser.add_argument("--pages", nargs="+", default=DEFAULT_PAGES, choices=list(TITLES))
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed per page")
    parser.add_argument("--shots", type=Path, help="save a screenshot of every page that failed into this folder")
    args = parser.parse_args()
    with streamlit_server() as url:
        from tests.browser import last_server_pid

        started, cpu_before = time.perf_counter(), _cpu_seconds(last_server_pid())
        if args.shots:
            args.shots.mkdir(parents=True, exist_ok=True)
        results = asyncio.run(_run(url, args.users, args.model, args.pages, int(args.timeout * 1000), args.shots))
        wall = time.perf_counter() - started
        rss = _peak_rss_mb(last_server_pid())
        server_cpu = _cpu_seconds(last_server_pid()) - cpu_before
    page_times = [t for r in results for t in r["pages"].values()]
    tours = [r["tour"] for r in results if not r["errors"]]
    errors = [e for r in results for e in r["errors"]]
    print(f"{args.users} users, model {args.model}, pages: {', '.join(args.pages)}")
    print(
        f"page render   p50 {_pct(page_times, 0.5):6.2f} s   p95 {_pct(page_times, 0.95):6.2f} s   n={len(page_times)}"
    )
    print(f"full tour     p50 {_pct(tours, 0.5):6.2f} s   p95 {_pct(tours, 0.95):6.2f} s   n={len(tours)}")
    setups = [r["setup"] for r in results if r["setup"] == r["setup"]]
    print(f"setup         p50 {_pct(setups, 0.5):6.2f} s   p95 {_pct(setups, 0.95):6.2f} s   (open, model, upload)")
    repeats = sum(r["repeats"] for r in results)
    print(f"wall {wall:.1f} s, errors {len(errors)}, repeated clicks {repeats}, server peak RSS {rss:.0f} MB")
    print(
        f"server CPU {server_cpu:.0f} s = {server_cpu / args.users:.1f} s per user's tour; "
        f"the browsers ran on the same {os.cpu_count()} cores"
    )
    for name in args.pages:
        per = [r["pages"][name] for r in results if name in r["pages"]]
        if per:
            print(f"  {name:14s} median {statistics.median(per):6.2f} s  max {max(per):6.2f} s")
    for e in errors[:20]:
        print("  error:", e)


if __name__ == "__main__":
    main()
