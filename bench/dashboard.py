"""Dashboard page readiness in a real browser: a 10M-event lake against a small demo lake.

For each lake it starts the real ``mailpulse dashboard``, opens every page in Debian's
Chromium (Playwright) and times ``page.goto`` until the page is ready as the browser test
defines it (:func:`bench.browser.wait_ready`: title shown, script finished, no stale or
skeleton element, every chart drawn). *Cold* is each page's first load after the server
started (empty caches, lake opened on first use); *warm* is the median of ``--repeat`` later
loads of the same page. The baseline is the same pages on a small demo lake in the same run,
so the ratio shows what 10M events cost. Targets: warm <= 2 s, cold <= 5 s on the big lake.

    .venv/bin/python bench/dashboard.py [--data-dir bench/results/lake-10m] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
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


def measure(data_dir: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Cold and warm seconds per page for the lake in ``data_dir``."""
    from playwright.sync_api import sync_playwright

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
    try:
        for _ in range(200):
            try:
                if requests.get(f"{base}/_stcore/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        results: dict[str, dict[str, float]] = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for path, title in PAGES.items():
                timings = []
                for _ in range(repeat + 1):
                    started = time.perf_counter()
                    page.goto(f"{base}/{path}")
                    wait_ready(page, title)
                    timings.append(time.perf_counter() - started)
                results[path or "overview"] = {
                    "cold": timings[0],
                    "warm": statistics.median(timings[1:]),
                }
            browser.close()
        return results
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    """Measure both lakes and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench/results/lake-10m")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "bench/results/dashboard-demo")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    if not any((args.data_dir / "lake" / "events").glob("date=*/*.parquet")):
        sys.exit(f"no lake at {args.data_dir}: run bench/report.py (it generates one) first")
    small = measure(demo_lake(args.demo_dir), args.repeat)
    big = measure(args.data_dir, args.repeat)
    print("| page | demo cold s | demo warm s | 10M cold s | 10M warm s | warm ratio | targets |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for page in big:
        b, s = big[page], small[page]
        ok = b["warm"] <= WARM_TARGET and b["cold"] <= COLD_TARGET
        print(
            f"| {page} | {s['cold']:.2f} | {s['warm']:.2f} | {b['cold']:.2f} | {b['warm']:.2f} "
            f"| {b['warm'] / s['warm']:.1f}x | {'PASS' if ok else 'MISS'} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"demo": small, "big": big}, indent=2))


if __name__ == "__main__":
    main()
