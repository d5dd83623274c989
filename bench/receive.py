"""Receive-path throughput: the real receiver against a no-op Flask endpoint, same run.

Both sides are served by the same stock server (gunicorn ``gthread`` by default, or Granian's
WSGI interface with ``--server granian``) on 127.0.0.1 with the same worker settings and loaded by
``wrk`` with the same signed ~600-byte generic event. The sides run alternately (noop, full,
noop, full, ...) and the median of each side is compared. See BENCHMARKS.md.

    .venv/bin/python bench/receive.py [--server granian] [--duration 15] [--rounds 3]

``--ladder`` adds two diagnostic sides to every round, to show where the full path's cost
goes: ``verified`` (the receiver's request handling, nothing written) and ``unsynced`` (the
spool's writes and group commit, without the device sync).

Each run also records the CPU time the server's processes spent per request. Req/s swings
with how the kernel spreads wrk's connections over the workers; CPU per request hardly does,
and its ratio to the no-op's bounds the req/s share a side can reach once the cores are busy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.apps import DATA_DIR_ENV, SECRET_ENV, SOURCE  # noqa: E402
from ingest.providers.generic import sign  # noqa: E402
from ingest.spool.sqlite import SqliteSpool  # noqa: E402
from mailpulse.demo import free_port  # noqa: E402

TARGET_RATIO = 60.0  # full path req/s as a percentage of the no-op's
TARGET_P99_MS = 25.0
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def event_body() -> bytes:
    """One generic-format event of about 600 bytes, as an ESP would send it."""
    event = {
        "id": f"bench-{secrets.token_hex(8)}",
        "type": "opened",
        "timestamp": round(time.time(), 3),
        "email": "jane.doe@example-bank.de",
        "message_id": "<20261128.4f2a9c1e.0042@mail.shop.example.com>",
        "campaign": "black-friday-2026",
        "tags": ["promo", "black-friday", "segment-b"],
        "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) "
        "AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        "ip": "203.0.113.7",
        "metadata": {"customer_id": "cus_8Hk2LmQ9", "list": "newsletter", "variant": "B"},
    }
    body = json.dumps(event, separators=(",", ":"))
    pad = max(0, 600 - len(body) - len(',"note":""'))
    event["note"] = "x" * pad
    return json.dumps(event, separators=(",", ":")).encode()


def lua_string(data: bytes) -> str:
    """``data`` as a Lua string literal (printable ASCII kept, the rest as ``\\ddd``)."""
    chars = (chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in data)
    return '"' + "".join(chars) + '"'


def write_lua(path: Path, body: bytes, secret: str) -> None:
    """A wrk script POSTing ``body`` signed now with ``secret`` (tolerance is 300 s)."""
    timestamp = int(time.time())
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {lua_string(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-Webhook-Timestamp"] = "{timestamp}"\n'
        f'wrk.headers["X-Webhook-Signature"] = "{sign(secret, timestamp, body)}"\n'
    )


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/s, request count, p50/p99 (ms), non-2xx and socket errors from wrk's output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if rps is None or total is None:
        raise RuntimeError(f"cannot parse wrk output:\n{text}")
    percentiles = {
        int(m[1]): float(m[2]) * _UNITS_MS[m[3]]
        for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "rps": float(rps[1]),
        "requests": int(total[1]),
        "p50_ms": percentiles.get(50, float("nan")),
        "p99_ms": percentiles.get(99, float("nan")),
        "non2xx": int(non2xx[1]) if non2xx else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def server_command(factory: str, port: int, args: argparse.Namespace) -> list[str]:
    """The stock server's command line serving the app ``factory`` builds (``module:function``)."""
    certfile, keyfile = getattr(args, "certfile", None), getattr(args, "keyfile", None)
    if args.server == "granian":
        tls = ["--ssl-certificate", certfile, "--ssl-keyfile", keyfile] if certfile else []
        return [
            *(sys.executable, "-m", "granian", "--interface", "wsgi", "--factory", "--http", "1"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)),
            *("--blocking-threads", str(args.threads), "--no-ws", "--log-level", "warning"),
            *tls,
            *("--working-dir", str(REPO), factory),
        ]
    tls = ["--certfile", certfile, "--keyfile", keyfile] if certfile else []
    return [
        *(sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"),
        *("--workers", str(args.workers), "--worker-class", "gthread"),
        *("--threads", str(args.threads), "--keep-alive", "5", "--timeout", "60"),
        *tls,
        *("--log-level", "warning", "--pythonpath", str(REPO), f"{factory}()"),
    ]


def start_server(
    factory: str, workdir: Path, args: argparse.Namespace, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    """Serve ``factory``'s app with the shared settings; return it once /readyz answers 200."""
    port = free_port()
    command = server_command(factory, port, args)
    with open(workdir / "server.log", "ab") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=log, start_new_session=True
        )
    tls = getattr(args, "certfile", None) is not None
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    unverified = ssl._create_unverified_context() if tls else None  # our own test certificate
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{(workdir / 'server.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1, context=unverified) as answer:
                if answer.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.1)
    stop_server(process)
    raise RuntimeError("the server did not become ready within 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's main process we started (graceful), SIGKILL its group if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measure(
    process: subprocess.Popen[bytes], url: str, script: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The measured wrk run, with the CPU time the server spent on it (its main process and
    every worker, in user space and in the kernel) and wrk's own: both share this machine's
    cores."""
    server = psutil.Process(process.pid)
    user, system = server_cpu_seconds(server)
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = parse_wrk(run_wrk(url, script, args.duration, args))
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user_after, system_after = server_cpu_seconds(server)
    result["server_user_s"] = user_after - user
    result["server_system_s"] = system_after - system
    result["server_cpu_s"] = result["server_user_s"] + result["server_system_s"]
    result["wrk_cpu_s"] = (wrk_after.ru_utime + wrk_after.ru_stime) - (
        wrk_before.ru_utime + wrk_before.ru_stime
    )
    result["cpu_ms_per_request"] = 1e3 * result["server_cpu_s"] / max(1, result["requests"])
    return result


def print_cpu_bound(summary: dict[str, dict[str, float]], sides: tuple[str, ...]) -> None:
    """Each side's server CPU per request against the no-op's: the req/s share a side can
    reach at most once the cores are busy, however the connections spread over workers."""
    noop = summary["noop"]["cpu_ms_per_request"]
    for side in sides[1:]:
        cost = summary[side]["cpu_ms_per_request"]
        print(
            f"CPU per request, {side}/noop: {cost / noop:.2f}x; with the cores busy, {side}"
            f" reaches at most {100.0 * noop / cost:.1f} % of the no-op's req/s"
        )


def server_cpu_seconds(server: psutil.Process) -> tuple[float, float]:
    """User and system CPU seconds of ``server`` and its living descendants (the workers)."""
    user = system = 0.0
    for process in (server, *server.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        user, system = user + times.user, system + times.system
    return user, system


def run_wrk(url: str, script: Path, seconds: float, args: argparse.Namespace) -> str:
    """Run wrk once and return its output."""
    command = ["wrk", f"-t{args.threads_wrk}", f"-c{args.connections}", f"-d{seconds:g}s"]
    command += ["--latency", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout


def spooled_records(spool_dir: Path) -> int:
    """Records the spool holds (every one waits: no flusher runs during the benchmark)."""
    spool = SqliteSpool(spool_dir / "spool.sqlite", max_bytes=1 << 62)
    try:
        return len(spool.claim(1 << 62, 1 << 30).records)
    finally:
        spool.close()


def spool_bytes(spool_dir: Path) -> int:
    """Bytes the spool's files take on disk."""
    return sum(p.stat().st_size for p in spool_dir.glob("spool.sqlite*"))


def run_side(side: str, body: bytes, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One warm-up plus one measured wrk run against a fresh server for ``side``."""
    secret = secrets.token_hex(32)  # per run, never stored
    data_dir = workdir / "data"
    metrics = workdir / "metrics"  # multiprocess metrics, as `mailpulse serve` runs them
    metrics.mkdir(parents=True)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics))
    env |= {DATA_DIR_ENV: str(data_dir), SECRET_ENV: secret}
    script = workdir / "post.lua"
    write_lua(script, body, secret)
    process, base = start_server(f"bench.apps:{side}", workdir, args, env)
    try:
        url = f"{base}/webhooks/{SOURCE}"
        warm = parse_wrk(run_wrk(url, script, args.warmup, args)) if args.warmup > 0 else None
        result = measure(process, url, script, args)
    finally:
        stop_server(process)
    result["side"] = side
    if side == "full":
        acknowledged = result["requests"] - result["non2xx"]
        if warm is not None:
            acknowledged += warm["requests"] - warm["non2xx"]
        result["acknowledged"] = acknowledged
        result["spool_bytes"] = spool_bytes(data_dir / "spool")
        result["spool_records"] = spooled_records(data_dir / "spool")
        # Every 200 must be on disk; requests cut off when wrk stopped may add a few more.
        result["spool_ok"] = result["spool_bytes"] > 0 and result["spool_records"] >= acknowledged
    # Deleted now, its unsynced pages are dropped; left until the end, the kernel would write
    # them back during the next side's run and slow its syncs.
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def add_run_arguments(
    parser: argparse.ArgumentParser, *, duration: float, warmup: float, rounds: int
) -> None:
    """The options both receive benchmarks take: run lengths, gunicorn and wrk settings."""
    parser.add_argument("--duration", type=float, default=duration, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=warmup, help="seconds of warm-up per run")
    parser.add_argument("--rounds", type=int, default=rounds, help="noop+full pairs to run")
    parser.add_argument(
        "--server",
        choices=("gunicorn", "granian"),
        default="gunicorn",
        help="stock server for both sides: gunicorn gthread, or granian's WSGI interface",
    )
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads-wrk", type=int, default=2, help="wrk threads")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, and return the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(parser, duration=15, warmup=3, rounds=3)
    parser.add_argument(
        "--ladder",
        action="store_true",
        help="also run the diagnostic sides: verified (nothing written), unsynced (no sync)",
    )
    args = parser.parse_args(argv)
    sides = ("noop", "verified", "unsynced", "full") if args.ladder else ("noop", "full")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    if args.warmup + args.duration >= 250:
        parser.error("warm-up plus duration must stay well under the 300 s signature tolerance")

    body = event_body()
    load_before = os.getloadavg()[0]  # other work on the machine skews both sides
    print(
        f"body {len(body)} bytes; {args.server}: {args.workers} workers,"
        f" {args.threads} threads; wrk -t{args.threads_wrk} -c{args.connections}"
        f" -d{args.duration:g}s after {args.warmup:g}s warm-up; {args.rounds} round(s);"
        f" load average {load_before:.2f} on {os.cpu_count()} CPUs\n"
    )
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mailpulse-bench-receive-") as tmp:
        for number in range(1, args.rounds + 1):
            for side in sides:
                result = run_side(side, body, Path(tmp) / f"{side}-{number}", args)
                result["round"] = number
                runs.append(result)
                extra = ""
                if side == "full":
                    extra = (
                        f"  spool {result['spool_records']} records"
                        f" / {result['acknowledged']} acknowledged,"
                        f" {result['spool_bytes']} bytes"
                    )
                print(
                    f"round {number} {side:8}: {result['rps']:9.1f} req/s"
                    f"  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms"
                    f"  server CPU {result['cpu_ms_per_request']:.3f} ms/req"
                    f" (wrk {result['wrk_cpu_s']:.1f} s)  non-2xx {result['non2xx']}{extra}"
                )

    summary: dict[str, dict[str, float]] = {}
    print(
        f"\n{'side':10}{'req/s':>10}{'% noop':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}"
        f"{'non-2xx':>9}{'sock err':>10}"
    )
    for side in sides:
        mine = [run for run in runs if run["side"] == side]
        summary[side] = {
            key: float(statistics.median(run[key] for run in mine))
            for key in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")
        }
        summary[side]["non2xx"] = sum(run["non2xx"] for run in mine)
        summary[side]["socket_errors"] = sum(run["socket_errors"] for run in mine)
        s = summary[side]
        share = 100.0 * s["rps"] / summary["noop"]["rps"]
        print(
            f"{side:10}{s['rps']:10.1f}{share:8.1f}{s['p50_ms']:9.2f}{s['p99_ms']:9.2f}"
            f"{s['cpu_ms_per_request']:12.3f}{int(s['non2xx']):9d}{int(s['socket_errors']):10d}"
        )
    print_cpu_bound(summary, sides)
    ratio = 100.0 * summary["full"]["rps"] / summary["noop"]["rps"]
    ratio_ok = ratio >= TARGET_RATIO
    p99_ok = summary["full"]["p99_ms"] < TARGET_P99_MS
    verdict = {True: "PASS", False: "MISS"}
    print(f"\nfull/noop req/s: {ratio:.1f} % (target >= {TARGET_RATIO:.0f} %): {verdict[ratio_ok]}")
    p99 = summary["full"]["p99_ms"]
    print(f"full p99: {p99:.2f} ms (target < {TARGET_P99_MS:.0f} ms): {verdict[p99_ok]}")

    failures = []
    if summary["full"]["non2xx"]:
        failures.append(f"the full path answered {int(summary['full']['non2xx'])} non-2xx")
    for side in sides:
        if side != "full" and summary[side]["non2xx"]:
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
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "load_before": load_before,
            },
            "settings": {k: str(v) for k, v in vars(args).items()} | {"body_bytes": len(body)},
            "runs": runs,
            "median": summary,
            "ratio_percent": ratio,
            "targets": {"ratio_percent": TARGET_RATIO, "p99_ms": TARGET_P99_MS},
            "pass": {"ratio": ratio_ok, "p99": p99_ok},
            "failures": failures,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
