"""Flush rate per provider: spool -> split -> normalize -> dedup -> Parquet, in events/s.

For each registered provider, the simulator's events (``mailpulse.simulate``) are encoded by
the provider exactly as its ESP sends them (its own ``max_batch``, every batch full as for a
high-volume account, a share of batches sent twice as ESPs do) and POSTed through the real
receiver app (Flask test clients on 8 threads: authentication and the fsync'd spool, no
network), so the spool holds what production would hold. Then ``Flusher(config).flush()``
drains it, timed. The lake is checked afterwards: it must hold each unique event once.
See BENCHMARKS.md.

    .venv/bin/python bench/flush_providers.py [--events 20000] [--providers a,b] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ingest.providers import PROVIDERS  # noqa: E402
from mailpulse.config import Config, parse_config  # noqa: E402
from mailpulse.simulate.esp import ESPS  # noqa: E402
from mailpulse.simulate.scenario import Scenario, generate  # noqa: E402
from mailpulse.simulate.schedule import Delivery, plan  # noqa: E402
from mailpulse.simulate.sender import SendClock  # noqa: E402

SOURCE = "bench"
URL = f"http://127.0.0.1:8025/webhooks/{SOURCE}"
EVENTS_PER_MESSAGE = 3.2  # about what the scenario makes; sizes the message count


def setup(name: str, data_dir: Path) -> tuple[Config, dict[str, str]]:
    """A config with one source of provider ``name`` and the sender keys for it."""
    receiver, sender = ESPS[name].demo_credentials(URL)
    document = {
        "data_dir": str(data_dir),
        "sources": {SOURCE: {"provider": name, **receiver}},
    }
    return parse_config(document, origin="bench", env={}, providers=PROVIDERS), sender


def spool_traffic(
    config: Config, sender: dict[str, str], events: int, duplicates: float
) -> dict[str, int]:
    """Encode the simulated traffic and store it through the receiver; the counts."""
    from ingest import create_app

    app = create_app(config)
    esp = ESPS[app.extensions["mailpulse"].sources[SOURCE].provider.name]
    simulated = generate(esp, Scenario(max(1, int(events / EVENTS_PER_MESSAGE)), seed=5))
    deliveries = plan(
        simulated,
        max_batch=esp.max_batch,
        duplicates=duplicates,
        out_of_order=True,
        seed=5,
        window=float("inf"),  # a high-volume account: the ESP fills every batch
    )
    # Repeats after every first delivery: the spool holds the same requests either way, and
    # no thread waits for a new second before re-sending (see SendClock).
    deliveries = [d for d in deliveries if not d.repeat] + [d for d in deliveries if d.repeat]
    local = threading.local()  # a test client per thread; the app itself is shared
    clock = SendClock()

    def post(delivery: Delivery) -> int:
        if not hasattr(local, "client"):
            local.client = app.test_client()
        client = local.client
        now = clock.now(delivery.batch)  # repeats in a later second, as ESPs send them
        request = esp.encode(delivery.events, url=URL, now=now, sender=sender)
        answer = client.open(
            f"/webhooks/{SOURCE}",
            method=request.method,
            data=request.body,
            headers=dict(request.headers),
        )
        status: int = answer.status_code
        return status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(post, deliveries))
    app.extensions["mailpulse"].spool.close()
    refused = sum(status != 200 for status in statuses)
    if refused:
        raise RuntimeError(f"{refused} of {len(statuses)} requests were refused")
    return {
        "unique_events": len(simulated),
        "requests": len(deliveries),
        "events_sent": sum(len(d.events) for d in deliveries),
    }


def lake_events(data_dir: Path) -> tuple[int, int]:
    """Rows and distinct event ids in the lake, read with DuckDB."""
    import duckdb

    glob = f"{data_dir}/lake/events/*/*.parquet"
    query = f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet('{glob}')"
    found = duckdb.connect().execute(query).fetchone()
    rows, distinct = found if found else (0, 0)
    return int(rows), int(distinct)


def measure(name: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Spool one provider's traffic, then time the flush of it."""
    from ingest.flush.flusher import Flusher

    config, sender = setup(name, workdir / "data")
    counts = spool_traffic(config, sender, args.events, args.duplicates)
    started = time.perf_counter()
    result = Flusher(config).flush()
    seconds = time.perf_counter() - started
    rows, distinct = lake_events(config.data_dir)
    return counts | {
        "provider": name,
        "max_batch": PROVIDERS[name].max_batch,
        "seconds": seconds,
        "events_per_s": counts["events_sent"] / seconds,
        "new_events": result.events,
        "quarantined": result.quarantined,
        "lake_rows": rows,
        "lake_ok": rows == distinct == counts["unique_events"] and not result.quarantined,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every selected provider, print the table, return the exit status."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per provider")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of batches resent")
    parser.add_argument("--providers", help="comma-separated (default: every registered one)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    names = sorted(PROVIDERS) if not args.providers else args.providers.split(",")
    unknown = [name for name in names if name not in PROVIDERS]
    if unknown:
        parser.error(
            f"unknown provider {unknown[0]!r} (registered: {', '.join(sorted(PROVIDERS))})"
        )

    load_before = os.getloadavg()[0]
    print(
        f"~{args.events:,} simulated events per provider, {args.duplicates:.0%} of batches"
        f" resent; load average {load_before:.2f} on {os.cpu_count()} CPUs\n"
    )
    print(
        f"{'provider':11}{'batch':>6}{'requests':>10}{'events':>9}{'seconds':>9}"
        f"{'events/s':>10}  lake"
    )
    with tempfile.TemporaryDirectory(prefix="mailpulse-bench-flush-warmup-") as tmp:
        warmup = argparse.Namespace(**(vars(args) | {"events": 500}))
        measure(names[0], Path(tmp), warmup)  # imports and first-use costs, not measured
    results = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"mailpulse-bench-flush-{name}-") as tmp:
            result = measure(name, Path(tmp), args)
        results.append(result)
        print(
            f"{name:11}{result['max_batch']:6d}{result['requests']:10,d}"
            f"{result['events_sent']:9,d}{result['seconds']:9.2f}"
            f"{result['events_per_s']:10,.0f}  "
            + ("ok" if result["lake_ok"] else f"WRONG ({result['lake_rows']} rows)")
        )
    failures = [r["provider"] for r in results if not r["lake_ok"]]
    if failures:
        print(f"FAILURE: the lake does not hold the unique events for {', '.join(failures)}")
    if args.json:
        report = {"date": time.strftime("%Y-%m-%d"), "load_before": load_before}
        report |= {"settings": {k: str(v) for k, v in vars(args).items()}, "results": results}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
