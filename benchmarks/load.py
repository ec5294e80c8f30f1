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
import statistics
import tempfile
import time
from pathlib import Path

from scripts.screenshots import TITLES
from tests.browser import CHROMIUM, CHROMIUM_ARGS, streamlit_server
from tests.conftest import photo, png_bytes

MODELS = {"fashion_cnn": "Fashion-MNIST CNN", "vgg16": "VGG-16 (ImageNet)"}
DEFAULT_PAGES = ["prediction", "activations", "filters", "attribution", "occlusion", "feature_space", "playground"]


async def _settle(page, timeout_ms: int) -> None:
    await page.locator("[data-testid=stMain] h1").first.wait_for(timeout=timeout_ms)
    await page.wait_for_function(
        "!document.querySelector('[data-testid=stSpinner], [data-testid=stSkeleton], [data-testid=stProgress]')",
        timeout=timeout_ms,
    )
    errors = await page.locator("[data-testid=stException]").count()
    if errors:
        raise RuntimeError("exception shown on the page")


async def _user(browser, url: str, user: int, model: str, pages: list[str], upload: Path, timeout_ms: int) -> dict:
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    times, errors = {}, []
    start = time.perf_counter()
    try:
        await page.goto(url, timeout=timeout_ms)
        await page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click(timeout=timeout_ms)
        await page.get_by_role("option", name=MODELS[model]).click()
        await page.get_by_text("Upload", exact=True).click()
        await page.locator("input[type=file]").set_input_files(str(upload))
        for name in pages:
            t = time.perf_counter()
            await page.get_by_role("link", name=TITLES[name]).first.click()
            await page.wait_for_timeout(300)
            try:
                await _settle(page, timeout_ms)
                times[name] = time.perf_counter() - t
            except Exception as exc:  # a timeout or an error on one page: count it, go on
                errors.append(f"user {user} {name}: {type(exc).__name__}: {str(exc)[:120]}")
    except Exception as exc:
        errors.append(f"user {user}: {type(exc).__name__}: {str(exc)[:160]}")
    finally:
        await context.close()
    return {"pages": times, "tour": time.perf_counter() - start, "errors": errors}


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _run(url: str, users: int, model: str, pages: list[str], timeout_ms: int) -> list[dict]:
    from playwright.async_api import async_playwright

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
                    *(_user(browser, url, u, model, pages, uploads[u], timeout_ms) for u in range(users))
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
    parser.add_argument("--model", choices=list(MODELS), default="fashion_cnn")
    parser.add_argument("--pages", nargs="+", default=DEFAULT_PAGES, choices=list(TITLES))
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed per page")
    args = parser.parse_args()
    with streamlit_server() as url:
        from tests.browser import last_server_pid

        started = time.perf_counter()
        results = asyncio.run(_run(url, args.users, args.model, args.pages, int(args.timeout * 1000)))
        wall = time.perf_counter() - started
        rss = _peak_rss_mb(last_server_pid())
    page_times = [t for r in results for t in r["pages"].values()]
    tours = [r["tour"] for r in results if not r["errors"]]
    errors = [e for r in results for e in r["errors"]]
    print(f"{args.users} users, model {args.model}, pages: {', '.join(args.pages)}")
    print(
        f"page render   p50 {_pct(page_times, 0.5):6.2f} s   p95 {_pct(page_times, 0.95):6.2f} s   n={len(page_times)}"
    )
    print(f"full tour     p50 {_pct(tours, 0.5):6.2f} s   p95 {_pct(tours, 0.95):6.2f} s   n={len(tours)}")
    print(f"wall {wall:.1f} s, errors {len(errors)}, server peak RSS {rss:.0f} MB")
    for name in args.pages:
        per = [r["pages"][name] for r in results if name in r["pages"]]
        if per:
            print(f"  {name:14s} median {statistics.median(per):6.2f} s  max {max(per):6.2f} s")
    for e in errors[:20]:
        print("  error:", e)


if __name__ == "__main__":
    main()
