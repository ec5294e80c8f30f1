"""The sanity check (cascading randomisation) in a plain process and inside a Streamlit server session.

Run: .venv/bin/python -m benchmarks.sanity_server [--stages N] [--only plain|server] [--dump FILE]

EfficientNet-Lite0 (chosen in the sidebar, with its first sample image), N stages (default:
the page's 6; fewer are set with the depth slider's arrow keys). Plain:
`app.analyses.sanity.cascade` called directly, twice (the first also builds graphs). Server:
`streamlit run` on a free port; headless Chromium opens the Sanity checks page, presses "Compute
the sanity check" if asked and waits for the chart.
Reported: wall seconds and CPU seconds (this process's for plain; the whole server process's,
from /proc, for the server run), with the load average, as the machine is shared. With --dump,
`py-spy dump` of the server is written to FILE 5 s into the run (which thread does what).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from app.analyses import sanity
from app.networks.models import get_model
from app.networks.samples import sample_bytes, samples

MODEL = "efficientnet_lite0"
PAGE_STAGES = 6  # pages/sanity.py's DEFAULT_STAGES


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plain(stages: int) -> None:
    model = get_model(MODEL)
    x = model.preprocess(Image.open(io.BytesIO(sample_bytes(samples(MODEL)[0]))).convert("RGB"))
    target = int(model.logits(x)[0].argmax())
    for run in ("first", "second"):
        start, cpu = time.perf_counter(), time.process_time()
        sanity.cascade(model, x, target, stages=stages)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"plain process, {run} run: wall {wall:.1f} s, CPU {cpu:.1f} s, load {os.getloadavg()[0]:.1f}")


def server(stages: int, dump: str | None) -> None:
    from tests.browser import IDLE, chromium_page, last_server_pid, streamlit_server

    with streamlit_server() as url, chromium_page() as page:
        pid = last_server_pid()
        page.goto(url, wait_until="networkidle")  # as a student: the model, a sample image, then the page
        page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click(timeout=600_000)
        page.get_by_role("option", name="EfficientNet-Lite0 (ImageNet, works offline)").click()
        page.get_by_text("Top-1:").wait_for(timeout=600_000)
        page.get_by_role("link", name="Sanity checks").first.click()
        page.get_by_role("slider").first.wait_for(timeout=600_000)  # the page is drawn (a busy machine: minutes)
        for _ in range(PAGE_STAGES - stages):
            page.get_by_role("slider").first.press("ArrowLeft")
            page.wait_for_timeout(300)
        page.wait_for_function(IDLE, timeout=300_000)
        start_button = page.get_by_role("button", name="Compute the sanity check")
        chart = page.locator("[data-testid=stPlotlyChart]")
        page.wait_for_timeout(1000)
        cpu, start = server_cpu_seconds(pid), time.perf_counter()
        if start_button.count():
            start_button.click()
        dumped = dump is None
        while not (chart.count() and chart.first.is_visible()):
            page.wait_for_timeout(250)
            if not dumped and time.perf_counter() - start > 5:
                with open(dump, "w") as out:
                    subprocess.run([sys.executable.replace("python", "py-spy"), "dump", "--pid", str(pid)], stdout=out)
                dumped = True
            if time.perf_counter() - start > 900:
                raise TimeoutError("no chart after 15 minutes")
        wall, cpu = time.perf_counter() - start, server_cpu_seconds(pid) - cpu
        print(f"server session: wall {wall:.1f} s, server CPU {cpu:.1f} s, load {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=PAGE_STAGES, choices=range(1, PAGE_STAGES + 1))
    parser.add_argument("--dump", help="write a py-spy dump of the server here, 5 s into the run")
    parser.add_argument("--only", choices=["plain", "server"])
    args = parser.parse_args()
    print(f"{MODEL}, {args.stages} stages; load average before: {os.getloadavg()}")
    if args.only != "server":
        plain(args.stages)
    if args.only != "plain":
        server(args.stages, args.dump)


if __name__ == "__main__":
    main()
