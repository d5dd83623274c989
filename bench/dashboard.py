"""Dashboard page readiness in a real browser: a 10M-event lake against a small demo lake.

For each lake and each page it starts the real ``mailpulse dashboard`` afresh, opens the page
in Debian's Chromium (Playwright, a new browser context: nothing cached) and times
``page.goto`` until the page is ready as the browser test defines it
(:func:`bench.browser.wait_ready`: title shown, script finished, no stale or skeleton element,
every chart drawn). *Cold* is that first load (server caches empty, the lake opened on first
use; the server's own start, until ``/_stcore/health`` answers, is not counted); *warm* is the
median of ``--repeat`` later loads of the same page. The baseline is the same pages on a small
demo lake in the same run, so the ratio shows what 10M events cost. Targets on the big lake:
warm <= 2 s, cold <= 5 s.

The 10M-event lake is ``bench/lake_generator.py``'s (made when missing, as ``bench/report.py``
makes it), with the per-message rollup that ``mailpulse compact`` builds (rebuilt when it does
not cover every events file).

    .venv/bin/python bench/dashboard.py [--data-dir bench/results/lake-10m] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.browser import CHROMIUM_ARGS, PAGES, chromium, wait_ready  # noqa: E402
from mailpulse.demo import free_port  # noqa: E402

WARM_TARGET, COLD_TARGET = 2.0, 5.0


def demo_lake(directory: Path) -> Path:
    """A small demo lake made by ``mailpulse demo`` (kept for later runs)."""
    if not any((directory / "data" / "lake" / "events").glob("date=*/*.parquet")):
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "mailpulse", "demo", "--messages", "300", "--no-dashboard"],
            cwd=directory,
            check=True,
            capture_output=True,
        )
    return directory / "data"


@contextlib.contextmanager
def dashboard(data_dir: Path) -> Iterator[tuple[str, float]]:
    """A fresh ``mailpulse dashboard`` process over ``data_dir``; yields its base URL and the
    seconds it took to answer ``/_stcore/health``."""
    config = data_dir.parent / "bench-dashboard.toml"
    config.write_text(f'data_dir = "{data_dir.resolve()}"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILPULSE_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "mailpulse", "dashboard", "--config", str(config)]
        + ["--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    launched = time.perf_counter()
    try:
        for _ in range(300):
            try:
                if requests.get(f"{base}/_stcore/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        yield base, time.perf_counter() - launched
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def measure(data_dir: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Cold and warm seconds per page for the lake in ``data_dir``."""
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[str, float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        for path, title in PAGES.items():
            with dashboard(data_dir) as (base, start):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                timings = []
                for _ in range(repeat + 1):
                    started = time.perf_counter()
                    page.goto(f"{base}/{path}")
                    wait_ready(page, title)
                    timings.append(time.perf_counter() - started)
                context.close()
            results[path or "overview"] = {
                "start": start,
                "cold": timings[0],
                "warm": statistics.median(timings[1:]),
            }
        browser.close()
    return results


def big_lake(data_dir: Path, events: int) -> Path:
    """The 10M-event lake with a rollup covering every events file (made when missing)."""
    if not any((data_dir / "lake" / "events").glob("date=*/*.parquet")):
        from bench.lake_generator import generate

        print(f"generating {events:,} events into {data_dir} ...", file=sys.stderr, flush=True)
        generate(data_dir, events=events)
    from analytics import rollup
    from mailpulse.storage import LakeStore

    lake_dir = LakeStore.local(data_dir / "lake")
    built = rollup.current(lake_dir)
    if built is None or built.covers != frozenset(rollup.events_files(lake_dir)):
        print("building the rollup (as `mailpulse compact` does) ...", file=sys.stderr)
        rollup.build(lake_dir)
    return data_dir


def main() -> None:
    """Measure both lakes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench/results/lake-10m")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "bench/results/dashboard-demo")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    small = measure(demo_lake(args.demo_dir), args.repeat)
    big = measure(big_lake(args.data_dir, args.events), args.repeat)
    size = f"{args.events / 1e6:g}M"  # the size asked for when the lake was made
    print(
        f"| page | demo cold s | demo warm s | {size} cold s | {size} warm s | cold ratio "
        "| warm ratio | targets (cold <= 5 s, warm <= 2 s) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for page in big:
        b, s = big[page], small[page]
        ok = b["warm"] <= WARM_TARGET and b["cold"] <= COLD_TARGET
        print(
            f"| {page} | {s['cold']:.2f} | {s['warm']:.2f} | {b['cold']:.2f} | {b['warm']:.2f} "
            f"| {b['cold'] / s['cold']:.1f}x | {b['warm'] / s['warm']:.1f}x "
            f"| {'PASS' if ok else 'MISS'} |"
        )
    starts = [b["start"] for b in big.values()]
    print(
        f"\nserver start until /_stcore/health answers (not in the times above): "
        f"{min(starts):.2f}-{max(starts):.2f} s"
    )
    if args.json:
        args.json.write_text(json.dumps({"demo": small, "big": big}, indent=2))


if __name__ == "__main__":
    main()
