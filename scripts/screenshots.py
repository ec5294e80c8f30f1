"""Screenshot app pages in headless Chromium, to look at what users see.

    python -m scripts.screenshots OUTDIR [--model fashion_cnn vgg16] [--pages prediction ...]
                                         [--sizes 1024x768 1440x900] [--compute]

Starts its own server on a free loopback port; for each window size and model picks
the model and the first sample image, opens each page and saves
OUTDIR/<model>_<page>_<size>.png (the whole page, not only the first screen).
1024x768 and 1440x900 are an old and a current classroom projector.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app.networks.models import MODEL_NAMES
from tests.browser import SETTLED, chromium_page, streamlit_server, wait_for_run

# Height of the main column's content, in CSS pixels.
FULL_HEIGHT = "document.querySelector('[data-testid=stMainBlockContainer]')?.scrollHeight + 200 || 0"

TITLES = {
    "prediction": "Prediction & architecture",
    "overview": "Network overview",
    "activations": "Activations",
    "filters": "Filters",
    "attribution": "Attribution",
    "sanity": "Sanity checks",
    "compare": "Models side by side",
    "occlusion": "Occlusion",
    "units": "What units look for",
    "feature_space": "Feature space",
    "playground": "Layer playground",
    "convolution": "Convolution, step by step",
    "training": "Live training",
    "dreams": "Dreams",
}


def shoot(
    out: Path, model_title: str, pages: list[str], wait_ms: int, size: tuple[int, int], compute: bool = False
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with streamlit_server() as url, chromium_page(*size) as page:
        page.goto(url, wait_until="networkidle")
        model_box = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first
        for _ in range(3):  # a busy server can drop the choice (see docs/HOSTING.md); choose again
            model_box.click(timeout=120_000)
            page.get_by_role("option", name=model_title).click()
            wait_for_run(page)
            if model_box.locator("input").first.input_value() == model_title:
                break
        for name in pages:
            page.get_by_role("link", name=TITLES[name]).first.click()
            wait_for_run(page)
            page.locator("[data-testid=stMain] h1").first.wait_for(timeout=240_000)
            page.wait_for_function(SETTLED, timeout=240_000)
            start = page.locator("[data-testid=stMain] button", has_text="Compute").first
            if compute and start.count():  # a long computation waits for a click (e.g. occlusion on VGG-16)
                start.click()
                wait_for_run(page)
                page.wait_for_function(SETTLED, timeout=240_000)
            page.wait_for_timeout(wait_ms)
            path = out / f"{model_title.split()[0].lower()}_{name}_{size[0]}x{size[1]}.png"
            page.screenshot(path=str(path))  # the first screen, as the projector shows it
            saved.append(path)
            # The app scrolls inside its own container, so a "full page" screenshot is one
            # screen: grow the window to the content's height for the whole page, then shrink back.
            tall = page.evaluate(FULL_HEIGHT)
            page.set_viewport_size({"width": size[0], "height": max(size[1], min(tall, 12_000))})
            page.wait_for_timeout(wait_ms)
            whole = path.with_name(path.stem + "_full.png")
            page.screenshot(path=str(whole))
            saved.append(whole)
            page.set_viewport_size({"width": size[0], "height": size[1]})
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", nargs="+", default=["fashion_cnn"], choices=list(MODEL_NAMES))
    parser.add_argument("--pages", nargs="+", default=["prediction", "activations", "filters"], choices=list(TITLES))
    parser.add_argument("--sizes", nargs="+", default=["1400x1100"], help="window sizes, WIDTHxHEIGHT")
    parser.add_argument("--wait-ms", type=int, default=2500)
    parser.add_argument(
        "--compute", action="store_true", help="click a page's 'Compute …' button first, to see its results"
    )
    args = parser.parse_args()
    for size in args.sizes:
        width, height = (int(n) for n in size.split("x"))
        for model in args.model:
            for path in shoot(args.out, MODEL_NAMES[model], args.pages, args.wait_ms, (width, height), args.compute):
                print(path)


if __name__ == "__main__":
    main()
