"""Keep the machine busy while something else runs: N processes that spin for a bounded time.

    python -m benchmarks.busy_load --procs 8 --minutes 90 -- make test

Used to check that the test suite holds on a loaded machine (issue 25: load average 6-10 on
2 cores). Each busy process alternates spinning and short sleeps so the load is steady but
the command under test still gets its share; all of them stop when the command ends or the
time is up, whichever comes first. The load average is printed every minute.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time


def _spin(until: float) -> None:
    while time.monotonic() < until:
        end = time.monotonic() + 0.09
        while time.monotonic() < end:
            pass
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=8, help="busy processes (default 8)")
    parser.add_argument("--minutes", type=float, default=90, help="stop spinning after this long (default 90)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run under load (after --)")
    args = parser.parse_args()
    command = [c for c in args.command if c != "--"] or ["sleep", "60"]
    until = time.monotonic() + args.minutes * 60
    spinners = [mp.Process(target=_spin, args=(until,), daemon=True) for _ in range(args.procs)]
    for p in spinners:
        p.start()
    started = time.monotonic()
    child = subprocess.Popen(command)
    try:
        while True:
            try:
                child.wait(timeout=60)
                break
            except subprocess.TimeoutExpired:
                minutes = (time.monotonic() - started) / 60
                print(f"[busy_load] {minutes:.1f} min, load average {os.getloadavg()}", file=sys.stderr, flush=True)
    finally:
        for p in spinners:
            p.terminate()
    print(
        f"[busy_load] command exited {child.returncode} after {(time.monotonic() - started) / 60:.1f} min",
        file=sys.stderr,
    )
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
