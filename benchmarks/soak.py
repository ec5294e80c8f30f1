"""Soak: student sessions come and go for half an hour; does the server's memory level off, and is a
closed session freed?

    python -m benchmarks.soak                                   # 200 sessions over 30 minutes
    python -m benchmarks.soak --sessions 40 --minutes 6         # a short version

Starts the app as a class server starts it (`python -m scripts.serve`, benchmarks/server.py) on its
own cores, with $CNN_LENS_MEMORY_PROBE set so it traces allocations and answers snapshot requests
(app/serving/memory_probe.py). Student i arrives at i x minutes / sessions, as a protocol-level
client (benchmarks/protocol.py, no browser): opens the app, picks model i mod 3 (every shipped
model in turn), opens What units look for, moves to a random layer (seeded; deep ones included),
looks for a while, leaves. Reports:
- resident memory after a quarter of the sessions (session 50 of 200) and after the last, and
  whether the last is within 10 % of the quarter's (the issue's bar);
- Python allocations that grew most between those two points (tracemalloc, by line);
- live Streamlit sessions (AppSession, SessionState objects) once every student has left and
  Streamlit has dropped their sessions (it keeps a closed one 2 minutes for a reconnect): 0 means
  a closed session's data was freed.
Every wait is bounded; the server is always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from app.networks.models import MODEL_NAMES
from benchmarks.protocol import Student
from benchmarks.server import Server, parse_cores, pin_self, pinned_server

UNITS = "What units look for"
DROP_WAIT = 150.0  # Streamlit keeps a closed session 120 s for a reconnect (MemorySessionStorage's ttl)


async def _student(url: str, index: int, rng: random.Random, linger: float, timeout: float) -> list[str]:
    """One student's visit; returns what went wrong on screen (exceptions, errors, lost clicks)."""
    problems: list[str] = []
    models = list(MODEL_NAMES)
    async with Student(url, timeout=timeout) as s:
        runs = [await s.set_widget(s.widget("Model", "selectbox", sidebar=True), MODEL_NAMES[models[index % 3]])]
        runs.append(await s.switch_page(UNITS))
        layer = s.widget("Layer", "selectbox")
        runs.append(await s.set_widget(layer, rng.choice(layer.options)))
        await asyncio.sleep(linger)
    for run in runs:
        problems += [*run.exceptions, *run.error_alerts]
        if not run.finished or run.lost:
            problems.append(f"{run.action}: {run.lost or run.status}")
    return problems


async def _probe(folder: Path, label: str, timeout: float = 120.0) -> dict:
    """Ask the server for a memory report and snapshot (app.serving.memory_probe); wait for it."""
    (folder / f"{label}.request").touch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (report := folder / f"{label}.json").exists() and not (folder / f"{label}.request").exists():
            return json.loads(report.read_text())
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the server wrote no {label} report within {timeout:.0f} s")


async def soak(server: Server, folder: Path, sessions: int, minutes: float, seed: int, timeout: float) -> dict:
    """Run the sessions; return the probe's reports at the quarter, the end and after Streamlit drops them."""
    rng = random.Random(seed)
    gap = minutes * 60 / sessions
    quarter = max(1, sessions // 4)
    reports: dict[str, dict] = {}
    problems: list[str] = []
    done = 0
    start = time.monotonic()

    async def one(i: int) -> None:
        nonlocal done
        await asyncio.sleep(max(0.0, start + i * gap - time.monotonic()))
        try:
            problems.extend(await _student(server.url, i, random.Random(rng.random()), rng.uniform(5, 30), timeout))
        except Exception as exc:  # a dropped socket or a page that never finished: count it, keep soaking
            problems.append(f"session {i}: {type(exc).__name__}: {exc}")
        done += 1
        rss = server.memory_mb()[0]
        print(f"{time.monotonic() - start:6.0f} s  session {i + 1} left ({done} done)  server {rss:.0f} MB", flush=True)
        if done == quarter:
            reports["quarter"] = await _probe(folder, "quarter")

    await asyncio.gather(*(one(i) for i in range(sessions)))
    reports["last"] = await _probe(folder, "last")
    print(f"every student has left; waiting {DROP_WAIT:.0f} s for Streamlit to drop their sessions", flush=True)
    await asyncio.sleep(DROP_WAIT)
    reports["dropped"] = await _probe(folder, "dropped")
    reports["problems"] = problems
    return reports


def top_growth(folder: Path, before: str, after: str, n: int = 10) -> list[str]:
    """The n source lines whose traced Python allocations grew most between two snapshots."""
    old = tracemalloc.Snapshot.load(str(folder / f"{before}.snapshot"))
    new = tracemalloc.Snapshot.load(str(folder / f"{after}.snapshot"))
    return [str(stat) for stat in new.compare_to(old, "lineno")[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=30.0, help="arrivals spread over this long")
    parser.add_argument("--server-cores", default="0", help="taskset list for the server (default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one action may take (first tables)")
    args = parser.parse_args()
    server_cores = parse_cores(args.server_cores)
    client_cores = set(range(os.cpu_count() or 1)) - server_cores or server_cores
    pin_self(client_cores)
    print(f"load average {os.getloadavg()}; MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '(unset)')}")
    with tempfile.TemporaryDirectory() as tmp, pinned_server(server_cores, {"CNN_LENS_MEMORY_PROBE": tmp}) as server:
        folder = Path(tmp)
        reports = asyncio.run(soak(server, folder, args.sessions, args.minutes, args.seed, args.timeout))
        quarter, last, dropped = reports["quarter"], reports["last"], reports["dropped"]
        growth = last["rss_mb"] / quarter["rss_mb"] - 1
        print(f"\nload average {os.getloadavg()}")
        print(
            f"resident after session {max(1, args.sessions // 4)}: {quarter['rss_mb']:.0f} MB; after session "
            f"{args.sessions}: {last['rss_mb']:.0f} MB ({growth:+.1%}; the bar is +10 %: "
            f"{'met' if growth <= 0.10 else 'MISSED'})"
        )
        print(f"traced Python memory: {quarter['traced_mb']:.0f} MB -> {last['traced_mb']:.0f} MB")
        print(
            f"live sessions as the last student left / once Streamlit dropped them: {last['objects']} / "
            f"{dropped['objects']} ({'freed' if not any(dropped['objects'].values()) else 'NOT FREED'})"
        )
        print(f"problems seen by students: {len(reports['problems'])}")
        for problem in reports["problems"][:10]:
            print("  ", problem[:200])
        print("\nPython allocations that grew most from the quarter to the end (tracemalloc):")
        for line in top_growth(folder, "quarter", "last"):
            print("  ", line)


if __name__ == "__main__":
    main()
