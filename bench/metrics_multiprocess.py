"""What central's metrics cost per message in one process and with ``run --workers N``.

With several workers every counter and histogram lives in prometheus-client's mmap'd
files (multiprocess mode, central.metrics); one process keeps them in memory. Each
mode runs in a fresh interpreter (the mode is chosen when prometheus-client is
imported) and times what ingest calls: per message ``count_message`` +
``acknowledged`` (a histogram), per batch ``wrote``; then one render as worker 0
scrapes it.

    python -m bench.metrics_multiprocess [--messages 100000] [--rounds 3]

Prints one line per mode and round.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(mode: str, messages: int) -> str:
    """In this (fresh) process: one mode's figures, as a line."""
    metrics_dir = None
    if mode == "workers":
        from central.workers import share_metrics

        metrics_dir = share_metrics(Path(tempfile.mkdtemp(prefix="pantau-metrics-")), clean=True)
    from central.metrics import Metrics

    metrics = Metrics(multiprocess_dir=metrics_dir)
    started = time.perf_counter()
    for _ in range(messages):
        metrics.count_message("telemetry")
        metrics.acknowledged((0.01,))
    per_message = (time.perf_counter() - started) / messages
    batches = max(1, messages // 100)
    started = time.perf_counter()
    for _ in range(batches):
        metrics.wrote(points=2000, readings=2000, events=0, seconds=0.01)
    per_batch = (time.perf_counter() - started) / batches
    started = time.perf_counter()
    metrics.render()
    render = time.perf_counter() - started
    return (
        f"{mode:8s} {per_message * 1e6:6.2f} µs per message (count + ingest latency), "
        f"{per_batch * 1e6:6.2f} µs per batch written, render {render * 1e3:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=["single", "workers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(measure(args.mode, args.messages))
        return
    for _ in range(args.rounds):
        for mode in ("single", "workers"):
            argv = [sys.executable, "-m", "bench.metrics_multiprocess", "--mode", mode]
            subprocess.run([*argv, "--messages", str(args.messages)], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
