"""Screenshot app pages in headless Chromium, to look at what users see.

    python -m scripts.screenshots OUTDIR [--model fashion_cnn] [--pages prediction activations ...]

Starts its own server on a free loopback port, picks the model and the first
sample image, opens each page and saves OUTDIR/<model>_<page>.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app.models import MODEL_NAMES
from tests.browser import SETTLED, chromium_page, streamlit_server, wait_for_run

TITLES = {
    "prediction": "Prediction & architecture",
    "activations": "Activations",
    "filters": "Filters",
    "attribution": "Attribution",
    "occlusion": "Occlusion",
    "units": "What units look for",
    "feature_space": "Feature space",
    "playground": "Layer playground",
    "training": "Live training",
}


def shoot(out: Path, model_title: str, pages: list[str], wait_ms: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with streamlit_server() as url, chromium_page(1400, 1100) as page:
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
            page.wait_for_timeout(wait_ms)
            path = out / f"{model_title.split()[0].lower()}_{name}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="fashion_cnn", choices=list(MODEL_NAMES))
    parser.add_argument("--pages", nargs="+", default=["prediction", "activations", "filters"], choices=list(TITLES))
    parser.add_argument("--wait-ms", type=int, default=2500)
    args = parser.parse_args()
    for path in shoot(args.out, MODEL_NAMES[args.model], args.pages, args.wait_ms):
        print(path)


if __name__ == "__main__":
    main()
