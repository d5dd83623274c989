"""Flush throughput: drain a spool backlog of N events into the lake, against a plain read.

The backlog is appended to the spool from many threads, as concurrent requests append it
(no HTTP: this measures the flusher). Then, each in a fresh subprocess, the baseline reads
and JSON-decodes every spooled record, and ``Flusher(config).flush()`` drains it; the lake
is checked with DuckDB after. See BENCHMARKS.md.

    .venv/bin/python bench/flush.py [--events 1000000] [--duplicates 0.1] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ingest import spool  # noqa: E402
from ingest.spool.sqlite import SqliteSpool  # noqa: E402

SOURCE = "bench"
TARGET_EVENTS_PER_SECOND = 60_000
AIM_EVENTS_PER_SECOND = 100_000
DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "acme-corp.com", "gmx.de")
DOMAIN_WEIGHTS = (35, 18, 12, 15, 12, 8)
TYPES = ("delivered", "opened", "clicked", "bounced")
TYPE_WEIGHTS = (55, 27, 12, 6)
CAMPAIGNS = ("black-friday-2026", "weekly-digest-48", "onboarding-day-1", "winback-q4")
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0",
)


def make_events(count: int, start: int, rng: random.Random, now: float) -> list[dict[str, Any]]:
    """``count`` generic-format events with unique ids ``start..start+count-1``."""
    kinds = rng.choices(TYPES, TYPE_WEIGHTS, k=count)
    domains = rng.choices(DOMAINS, DOMAIN_WEIGHTS, k=count)
    events = []
    for offset, (kind, domain) in enumerate(zip(kinds, domains, strict=True)):
        n = start + offset
        campaign = CAMPAIGNS[n % len(CAMPAIGNS)]
        event: dict[str, Any] = {
            "id": f"evt-{n:09d}",
            "type": kind,
            "timestamp": round(now - rng.uniform(60, 3 * 86_400), 3),
            "email": f"user{rng.randrange(250_000):06d}@{domain}",
            "message_id": f"<{n // 3:08d}.{campaign}@mail.example.com>",
            "campaign": campaign,
            "tags": [campaign.split("-")[0]],
        }
        if kind == "opened":
            event["user_agent"] = rng.choice(AGENTS)
            if event["user_agent"] == "Mozilla/5.0":  # Apple Mail Privacy Protection
                event["ip"] = "17.58.0.1"
        elif kind == "clicked":
            event["user_agent"] = AGENTS[0]
            event["url"] = f"https://shop.example.com/{campaign}?utm_source=email&n={n % 97}"
        elif kind == "bounced":
            hard = rng.random() < 0.6
            event["bounce_class"] = "hard" if hard else "soft"
            event["smtp_status"] = "5.1.1" if hard else "4.2.2"
            event["reason"] = "550 5.1.1 user unknown" if hard else "452 4.2.2 mailbox full"
        events.append(event)
    return events


def record_for(body: bytes) -> spool.SpoolRecord:
    """A spool record as the receiver writes it for a signed generic request."""
    received_at = time.time_ns() // 1000
    return spool.SpoolRecord(
        request_id=f"{time.time_ns():x}-{uuid.uuid4().hex[:12]}",
        source=SOURCE,
        received_at=received_at,
        remote_addr="127.0.0.1",
        method="POST",
        url=f"http://127.0.0.1:8025/webhooks/{SOURCE}",
        content_type="application/json",
        headers={
            "host": "127.0.0.1:8025",
            "user-agent": "esp-webhooks/2.1",
            "content-type": "application/json",
            "content-length": str(len(body)),
            "x-webhook-timestamp": str(received_at // 1_000_000),
        },
        body=body,
    )


def bodies(
    events: int, duplicates: float, array_size: int, seed: int
) -> Iterator[tuple[bytes, int, bool]]:
    """``(body, events in it, resent)``: one event and an array in turn; a share sent again."""
    rng = random.Random(seed)
    now = time.time()
    retries: list[tuple[bytes, int]] = []
    made = shape = 0
    while made < events:
        single = shape % 2 == 0
        shape += 1
        size = 1 if single else min(array_size, events - made)
        batch = make_events(size, made, rng, now)
        made += size
        body = orjson.dumps(batch[0] if single else batch)
        yield body, size, False
        if rng.random() < duplicates:  # an ESP retry: same body, a new request, a bit later
            retries.append((body, size))
        if len(retries) >= 500 or made >= events:
            yield from ((again, count, True) for again, count in retries)
            retries.clear()


def build(
    data_dir: Path, events: int, duplicates: float, array_size: int, seed: int
) -> dict[str, int]:
    """Append the backlog to the spool through its interface, from 64 threads at a time."""
    stats = dict.fromkeys(("requests", "events_written", "duplicate_requests"), 0)
    stats |= {"duplicate_events": 0, "bytes": 0, "unique_events": events}
    queue = SqliteSpool(spool_path(data_dir), max_bytes=1 << 62)
    with ThreadPoolExecutor(max_workers=64) as pool:
        made = bodies(events, duplicates, array_size, seed)
        while chunk := list(itertools.islice(made, 4096)):
            records = [record_for(body) for body, _count, _resent in chunk]
            list(pool.map(queue.append, records))
            for (_body, count, resent), record in zip(chunk, records, strict=True):
                stats["bytes"] += len(record.header()) + len(record.body)
                stats["requests"] += 1
                stats["events_written"] += count
                if resent:
                    stats["duplicate_requests"] += 1
                    stats["duplicate_events"] += count
    queue.close()
    return stats


def spool_path(data_dir: Path) -> Path:
    """Where the flusher's configuration (``data_dir``) finds the embedded spool."""
    return data_dir / "spool" / "spool.sqlite"


def read_baseline(data_dir: Path) -> dict[str, Any]:
    """Read every spool record and decode its body: the floor any flusher must pay."""
    started = time.perf_counter()
    requests = events = 0
    with sqlite3.connect(spool_path(data_dir)) as db:  # the engine's table, read in order
        for header, body in db.execute("SELECT header, body FROM records ORDER BY id"):
            record = spool.SpoolRecord.decode(header, body)
            document = orjson.loads(record.body)
            events += len(document) if isinstance(document, list) else 1
            requests += 1
    return {"seconds": time.perf_counter() - started, "requests": requests, "events": events}


def flush_phase(data_dir: Path, workers: int | None) -> dict[str, Any]:
    """Drain the spool with the real flusher; time it and take the process's peak RSS."""
    from ingest.flush.flusher import Flusher
    from ingest.providers import PROVIDERS
    from mailpulse.config import parse_config

    document = {
        "data_dir": str(data_dir),
        "sources": {SOURCE: {"provider": "generic", "secret": secrets.token_hex(32)}},
    }
    flusher = Flusher(
        parse_config(document, origin="bench", env={}, providers=PROVIDERS), workers=workers
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = flusher.flush()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # The normalizing workers have exited by now; this is the largest one's peak.
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "seconds": seconds,
        "rss_before_kib": rss_before,
        "peak_rss_kib": peak,
        "workers": flusher.pool.workers if flusher.pool else 0,
        "workers_peak_rss_kib": workers_peak,
    } | vars(result)


def lake_counts(data_dir: Path) -> dict[str, int]:
    """Rows and distinct ids in the lake, read with DuckDB (not through mailpulse)."""
    import duckdb

    con = duckdb.connect()
    counts: dict[str, int] = {}
    for table, key in (("events", "event_id"), ("raw", "request_id"), ("quarantine", "payload")):
        rows = unique = 0
        if list((data_dir / "lake" / table).glob("date=*/*.parquet")):
            files = f"read_parquet('{data_dir}/lake/{table}/*/*.parquet', hive_partitioning=true)"
            ((rows, unique),) = con.sql(
                f"SELECT count(*), count(DISTINCT {key}) FROM {files}"
            ).fetchall()
        counts[table], counts[f"{table}_distinct"] = int(rows), int(unique)
    return counts


def subphase(phase: str, data_dir: Path, *options: str) -> dict[str, Any]:
    """Run one phase of this script in a fresh interpreter and return its JSON answer."""
    command = [sys.executable, __file__, "--phase", phase, "--data-dir", str(data_dir), *options]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{done.stdout}\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    """Build, read, flush, verify; print the table and return the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="unique events to spool")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of requests resent")
    parser.add_argument("--array-size", type=int, default=10, help="events per array body")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the backlog")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--phase",
        choices=("all", "build", "read", "flush"),
        default="all",
        help="run one step only on --data-dir (read and flush print JSON)",
    )
    parser.add_argument("--data-dir", type=Path, help="data directory (default: a temporary one)")
    parser.add_argument(
        "--workers", type=int, help="processes normalizing beside the flusher (default: CPUs - 1)"
    )
    args = parser.parse_args(argv)
    if args.phase != "all" and args.data_dir is None:
        parser.error(f"--phase {args.phase} needs --data-dir")
    if args.phase == "read":
        print(json.dumps(read_baseline(args.data_dir)))
        return 0
    if args.phase == "flush":
        print(json.dumps(flush_phase(args.data_dir, args.workers)))
        return 0

    load_before = os.getloadavg()[0]  # other work on the machine skews the timings
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="mailpulse-bench-flush-"))
    try:
        started = time.perf_counter()
        backlog = build(data_dir, args.events, args.duplicates, args.array_size, args.seed)
        print(
            f"backlog: {backlog['unique_events']} unique events in {backlog['requests']} requests"
            f" ({backlog['duplicate_requests']} resent, {backlog['duplicate_events']} duplicate"
            f" events), {backlog['bytes'] / 2**20:.0f} MiB spooled,"
            f" built in {time.perf_counter() - started:.1f} s; load average {load_before:.2f}"
            f" on {os.cpu_count()} CPUs"
        )
        if args.phase == "build":
            return 0
        read = subphase("read", data_dir)
        workers = () if args.workers is None else ("--workers", str(args.workers))
        flush = subphase("flush", data_dir, *workers)
        lake = lake_counts(data_dir)
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)

    flush_eps = flush["events"] / flush["seconds"]
    ratio = flush["seconds"] / read["seconds"]
    ok = flush_eps >= TARGET_EVENTS_PER_SECOND
    print(f"\n{'phase':12}{'seconds':>9}{'events/s':>11}{'requests/s':>12}{'peak RSS MiB':>14}")
    peak = f"{flush['peak_rss_kib'] / 1024:.0f}"
    for name, phase, rss in (("read+decode", read, "-"), ("flush", flush, peak)):
        eps = backlog["unique_events"] / phase["seconds"]  # the same count for both rows
        rps = backlog["requests"] / phase["seconds"]
        print(f"{name:12}{phase['seconds']:9.2f}{eps:11.0f}{rps:12.0f}{rss:>14}")
    print(
        f"\nflush time / read time: {ratio:.1f}x; flusher RSS after imports"
        f" {flush['rss_before_kib'] / 1024:.0f} MiB; {flush['batches']} batches;"
        f" {flush['workers']} normalizing workers, the largest's peak RSS"
        f" {flush['workers_peak_rss_kib'] / 1024:.0f} MiB"
        f"\nstored {flush['events']} events, dropped {flush['duplicates']} duplicates;"
        f" lake: {lake['events']} event rows ({lake['events_distinct']} distinct ids),"
        f" {lake['raw']} raw rows, {lake['quarantine']} quarantine rows"
        f"\nflusher {flush_eps:.0f} events/s (target >= {TARGET_EVENTS_PER_SECOND},"
        f" aim {AIM_EVENTS_PER_SECOND}): {'PASS' if ok else 'MISS'}"
    )

    expected = {
        "read events": (read["events"], backlog["events_written"]),
        "read requests": (read["requests"], backlog["requests"]),
        "flushed events": (flush["events"], backlog["unique_events"]),
        "flushed requests": (flush["requests"], backlog["requests"]),
        "duplicates dropped": (flush["duplicates"], backlog["duplicate_events"]),
        "quarantined": (flush["quarantined"], 0),
        "lake events rows": (lake["events"], backlog["unique_events"]),
        "lake distinct event ids": (lake["events_distinct"], backlog["unique_events"]),
        "lake raw rows": (lake["raw"], backlog["requests"]),
        "lake quarantine rows": (lake["quarantine"], 0),
    }
    failures = [f"{k}: {got} != {want}" for k, (got, want) in expected.items() if got != want]
    for failure in failures:
        print(f"FAILURE: {failure}")
    if args.json:
        report = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "load_before": load_before,
            },
            "settings": {k: str(v) for k, v in vars(args).items()},
            "backlog": backlog,
            "read": read,
            "flush": flush,
            "lake": lake,
            "flush_events_per_second": flush_eps,
            "flush_over_read": ratio,
            "pass": ok,
            "failures": failures,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
