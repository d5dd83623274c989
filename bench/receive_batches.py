"""Receive path with SendGrid-sized batches: 1,000 ECDSA-signed events per request.

The full receiver (SendGrid's ECDSA P-256 check over the raw body, then the fsync'd spool)
against the no-op Flask endpoint receiving the very same body, both served by gunicorn with
the same settings and loaded by ``wrk``, alternately (noop, full, noop, full, ...) in one
run; the median of each side is compared. The body is 1,000 events the simulator makes
(``mailpulse.simulate``), encoded and signed by the ``sendgrid`` provider exactly as
SendGrid posts them. See BENCHMARKS.md.

    .venv/bin/python bench/receive_batches.py [--duration 10] [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.apps import DATA_DIR_ENV, SOURCE  # noqa: E402
from bench.receive import (  # noqa: E402
    add_run_arguments,
    lua_string,
    measure,
    parse_wrk,
    run_wrk,
    spooled_records,
    start_server,
    stop_server,
)
from ingest.providers.base import InboundRequest, Provider  # noqa: E402
from ingest.spool import SpoolRecord, new_request_id  # noqa: E402
from ingest.spool.sqlite import SqliteSpool  # noqa: E402
from mailpulse.simulate.esp import ESPS, OutboundRequest  # noqa: E402

TARGET_SHARE_OF_CEILING = 60.0  # full/noop as a percentage of the ceiling this run measures
AIM_SHARE_OF_CEILING = 80.0
BATCH = 1000
PUBLIC_KEY_ENV = "MAILPULSE_BENCH_SENDGRID_PUBLIC_KEY"


def full() -> Any:
    """Gunicorn app factory: the real receiver with one ``sendgrid`` source (public key only)."""
    from ingest import create_app
    from ingest.logs import configure
    from ingest.providers import PROVIDERS
    from mailpulse.config import parse_config

    document = {
        "data_dir": os.environ[DATA_DIR_ENV],
        # No flusher drains the spool here, and a run keeps several GB of 380 KB bodies: the
        # default 4 GiB quota would answer 503 mid-run.
        "receiver": {"spool_max_bytes": 64 * 1024**3},
        "sources": {SOURCE: {"provider": "sendgrid", "public_key": os.environ[PUBLIC_KEY_ENV]}},
    }
    configure()  # as ``python -m ingest.intake.server`` does
    return create_app(parse_config(document, origin="bench", env={}, providers=PROVIDERS))


def signed_batch() -> tuple[OutboundRequest, str, Provider]:
    """1,000 simulated events as one signed SendGrid request, the receiver's public key, and
    the receiver's provider (configured with that key)."""
    from ingest.providers import PROVIDERS
    from mailpulse.config import parse_config
    from mailpulse.simulate.scenario import Scenario, generate

    if "sendgrid" not in PROVIDERS:
        raise SystemExit(
            "bench/receive_batches.py needs the sendgrid provider "
            "(ingest/providers/sendgrid), which is not registered in ingest/providers"
        )
    esp = ESPS["sendgrid"]
    receiver, sender = esp.demo_credentials(f"http://127.0.0.1/webhooks/{SOURCE}")
    document = {"sources": {SOURCE: {"provider": "sendgrid", **receiver}}}
    provider = PROVIDERS["sendgrid"](
        parse_config(document, origin="bench", env={}, providers=PROVIDERS).sources[SOURCE]
    )
    events = generate(esp, Scenario(messages=600, seed=11))
    if len(events) < BATCH:
        raise RuntimeError(f"the scenario made only {len(events)} events")
    request = esp.encode(events[:BATCH], url="", now=time.time(), sender=sender)
    return request, str(receiver["public_key"]), provider


def floor_cost(
    request: OutboundRequest, provider: Provider, directory: Path, repeat: int
) -> dict[str, float]:
    """CPU seconds per request of the work no receive path can skip, measured in one thread.

    A SendGrid signature covers the whole body, so it must be verified over every byte
    (``authenticate``: SHA-256 then ECDSA), and promise 1 says the body is on disk and synced
    before the answer (``SqliteSpool.append``: one committed transaction, into a spool in
    ``directory``, on the same disk as the benchmark's). Process CPU time counts the kernel's
    share of each write and sync in this process but not the disk's interrupts, so this is
    a lower bound.
    """
    inbound = InboundRequest(
        source=SOURCE,
        method=request.method,
        url=f"/webhooks/{SOURCE}",
        headers={name.lower(): value for name, value in request.headers.items()},
        body=request.body,
        remote_addr="127.0.0.1",
        content_type="application/json",
    )
    started = time.process_time()
    for _ in range(repeat):
        provider.authenticate(inbound, time.time())
    authenticate = (time.process_time() - started) / repeat
    spool = SqliteSpool(directory / "spool.sqlite", max_bytes=1 << 62)
    record = SpoolRecord(
        request_id=new_request_id(),
        source=SOURCE,
        received_at=time.time_ns() // 1000,
        remote_addr="127.0.0.1",
        method="POST",
        url=inbound.url,
        content_type="application/json",
        headers=dict(inbound.headers),
        body=request.body,
    )
    started = time.process_time()
    for _ in range(repeat):
        spool.append(record)
    append = (time.process_time() - started) / repeat
    spool.close()
    return {"authenticate_s": authenticate, "append_s": append}


def ceiling_ratio(noop_rps: float, extra_cpu_s: float, cpus: int) -> float:
    """The highest full/noop ratio possible if the full path cost the no-op's CPU per request
    (``cpus / noop_rps``, wrk's share included) plus ``extra_cpu_s`` and nothing else."""
    return 100.0 / (1.0 + extra_cpu_s * noop_rps / cpus)


def write_lua(path: Path, request: OutboundRequest) -> None:
    """A wrk script POSTing the request's body with its headers (signed once, reused)."""
    lines = [f'wrk.method = "{request.method}"', f"wrk.body = {lua_string(request.body)}"]
    lines += [
        f'wrk.headers["{name}"] = {lua_string(value.encode())}'
        for name, value in request.headers.items()
    ]
    path.write_text("\n".join(lines) + "\n")


def run_side(
    side: str, request: OutboundRequest, public_key: str, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """One warm-up plus one measured wrk run against a fresh server for ``side``."""
    data_dir = workdir / "data"
    metrics = workdir / "metrics"  # multiprocess metrics, as `mailpulse serve` runs them
    metrics.mkdir(parents=True)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics))
    env |= {DATA_DIR_ENV: str(data_dir), PUBLIC_KEY_ENV: public_key}
    script = workdir / "post.lua"
    write_lua(script, request)
    target = "bench.apps:noop" if side == "noop" else f"bench.receive_batches:{side}"
    process, base = start_server(target, workdir, args, env)
    try:
        url = f"{base}/webhooks/{SOURCE}"
        warm = parse_wrk(run_wrk(url, script, args.warmup, args)) if args.warmup > 0 else None
        result = measure(process, url, script, args)
    finally:
        stop_server(process)
    result |= {"side": side, "events_per_s": result["rps"] * BATCH}
    if side == "full":
        acknowledged = result["requests"] - result["non2xx"]
        if warm is not None:
            acknowledged += warm["requests"] - warm["non2xx"]
        result["acknowledged"] = acknowledged
        result["spool_records"] = spooled_records(data_dir / "spool")
        result["spool_ok"] = result["spool_records"] >= acknowledged
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, and return the exit status."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(parser, duration=10, warmup=2, rounds=3)
    parser.add_argument(
        "--floor-repeat",
        type=int,
        default=200,
        help="requests the in-process floor-cost measurement verifies and appends",
    )
    args = parser.parse_args(argv)
    sides = ("noop", "full")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")

    request, public_key, provider = signed_batch()
    load_before = os.getloadavg()[0]  # other work on the machine skews both sides
    print(
        f"body {len(request.body):,} bytes ({BATCH} SendGrid events, ECDSA P-256);"
        f" {args.server}: {args.workers} workers, {args.threads} threads;"
        f" wrk -t{args.threads_wrk} -c{args.connections} -d{args.duration:g}s after"
        f" {args.warmup:g}s warm-up; {args.rounds} round(s); load average {load_before:.2f}"
        f" on {os.cpu_count()} CPUs\n"
    )
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mailpulse-bench-batches-") as tmp:
        for number in range(1, args.rounds + 1):
            for side in sides:
                result = run_side(side, request, public_key, Path(tmp) / f"{side}-{number}", args)
                result["round"] = number
                runs.append(result)
                print(
                    f"round {number} {side:4}: {result['rps']:8.1f} req/s"
                    f" {result['events_per_s']:11,.0f} events/s  p99 {result['p99_ms']:7.2f} ms"
                    f"  server CPU {result['cpu_ms_per_request']:.3f} ms/req"
                    f"  non-2xx {result['non2xx']}"
                )

    summary: dict[str, dict[str, float]] = {}
    print(
        f"\n{'side':6}{'req/s':>9}{'events/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}"
        f"{'non-2xx':>9}"
    )
    for side in sides:
        mine = [run for run in runs if run["side"] == side]
        summary[side] = {
            key: float(statistics.median(run[key] for run in mine))
            for key in ("rps", "events_per_s", "p50_ms", "p99_ms", "cpu_ms_per_request")
        }
        summary[side]["non2xx"] = sum(run["non2xx"] for run in mine)
        s = summary[side]
        print(
            f"{side:6}{s['rps']:9.1f}{s['events_per_s']:12,.0f}{s['p50_ms']:9.2f}"
            f"{s['p99_ms']:9.2f}{s['cpu_ms_per_request']:12.3f}{int(s['non2xx']):9d}"
        )
    ratio = 100.0 * summary["full"]["rps"] / summary["noop"]["rps"]
    print(f"\nfull/noop req/s: {ratio:.1f} %")

    with tempfile.TemporaryDirectory(prefix="mailpulse-bench-floor-") as tmp:
        floor = floor_cost(request, provider, Path(tmp), args.floor_repeat)
    cpus = os.cpu_count() or 1
    extra = floor["authenticate_s"] + floor["append_s"]
    ceiling = ceiling_ratio(summary["noop"]["rps"], extra, cpus)
    noop_ms = cpus / summary["noop"]["rps"] * 1e3
    print(
        f"\nunavoidable work per request, one thread: authenticate"
        f" {floor['authenticate_s'] * 1e3:.3f} ms + spool append (one SQLite commit)"
        f" {floor['append_s'] * 1e3:.3f} ms of CPU;\nthe no-op uses {noop_ms:.3f} ms of the"
        f" {cpus} CPUs per request, so no full path can exceed {ceiling:.1f} % of it here;"
        f"\nthis one reaches {100.0 * ratio / ceiling:.1f} % of that ceiling"
    )
    share = 100.0 * ratio / ceiling
    verdict = "PASS" if share >= TARGET_SHARE_OF_CEILING else "MISS"
    print(
        f"share of the ceiling: {share:.1f} % (target >= {TARGET_SHARE_OF_CEILING:.0f} %,"
        f" aim {AIM_SHARE_OF_CEILING:.0f} %): {verdict}"
    )

    failures = []
    for side in sides:
        if summary[side]["non2xx"]:
            failures.append(f"the {side} side answered {int(summary[side]['non2xx'])} non-2xx")
    for run in runs:
        if run["side"] == "full" and not run["spool_ok"]:
            failures.append(
                f"round {run['round']}: the spool holds {run['spool_records']} records"
                f" for {run['acknowledged']} acknowledged requests"
            )
    for failure in failures:
        print(f"FAILURE: {failure}")
    if args.json:
        report = {
            "date": time.strftime("%Y-%m-%d"),
            "load_before": load_before,
            "settings": {k: str(v) for k, v in vars(args).items()}
            | {"body_bytes": len(request.body), "events_per_request": BATCH},
            "runs": runs,
            "median": summary,
            "ratio_percent": ratio,
            "share_of_ceiling_percent": share,
            "target_share_of_ceiling_percent": TARGET_SHARE_OF_CEILING,
            "floor_cost_s": floor,
            "ceiling_ratio_percent": ceiling,
            "failures": failures,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
