"""The shared spool engine (PostgreSQL): against the embedded one, two receivers, failover.

One PostgreSQL cluster for the run (``tests/postgres.py``), a fresh database for every run.
1. ``bench.apps:full`` (SQLite) and ``bench.apps:shared`` (PostgreSQL) alternate under wrk as in
``bench/receive.py``. 2. ``mailpulse serve`` on PostgreSQL: one receiver direct, two and one
behind nginx (``deploy/nginx-two-receivers.conf``, plain HTTP); single events, SendGrid batches.
3. One of two receivers behind nginx SIGKILLed under a sender: the time until every request
succeeds for 2 s straight, and the failures seen. See BENCHMARKS.md, "Shared spool".

    .venv/bin/python bench/shared_spool.py [--rounds 3] [--failovers 3] [--parts pair failover]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import receive, receive_batches  # noqa: E402
from bench.apps import DATA_DIR_ENV, SECRET_ENV, SOURCE, SPOOL_URL_ENV  # noqa: E402
from ingest.providers.generic import sign  # noqa: E402
from mailpulse.demo import free_port  # noqa: E402
from tests import postgres  # noqa: E402

TARGET_RATIO, TARGET_P99_MS = 50.0, 50.0  # shared req/s as a % of the embedded engine's; p99
BATCH, BATCH_SOURCE, KEY_ENV = receive_batches.BATCH, "batch", receive_batches.PUBLIC_KEY_ENV
EXAMPLE = REPO / "deploy" / "nginx-two-receivers.conf"
CASES = {"direct": "one receiver, direct", "one": "one behind nginx", "pair": "two behind nginx"}
SENDERS, KILL_AFTER, STEADY, TIMEOUT, CAP = 4, 3.0, 2.0, 5.0, 30.0
KEYS, BOTH = ("rps", "p50_ms", "p99_ms"), ("single", "batch")
VERDICT = {True: "PASS", False: "MISS"}
NGINX_MAIN = """worker_processes 1;\npid {dir}/nginx.pid;\nevents { worker_connections 1024; }
http {\n    log_format timed '$msec $upstream_addr';\n    access_log {dir}/access.log timed;
    client_body_temp_path {dir}/client_body;\n    proxy_temp_path {dir}/proxy;
    include {dir}/receivers.conf;\n}\n"""


@contextlib.contextmanager
def database(cluster: postgres.Cluster) -> Iterator[str]:
    """A fresh database's URL; dropped afterwards, so runs do not fill the disk."""
    url = cluster.new_database()
    try:
        yield url
    finally:
        with psycopg.connect(cluster.url(), autocommit=True) as db:
            db.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def spool_rows(url: str) -> int:
    """Records the PostgreSQL spool holds (nothing flushes during a run)."""
    with psycopg.connect(url) as db:
        return int((db.execute("SELECT count(*) FROM mailpulse_spool").fetchone() or (0,))[0])


def measure(url: str, script: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A warm-up and a measured wrk run: the measured one, with the 2xx of both."""
    warm = receive.parse_wrk(receive.run_wrk(url, script, args.warmup, args))
    result = receive.parse_wrk(receive.run_wrk(url, script, args.duration, args))
    acknowledged = result["requests"] - result["non2xx"] + warm["requests"] - warm["non2xx"]
    return result | {"acknowledged": acknowledged}


def engine_run(side: str, workdir: Path, args: argparse.Namespace, cluster: Any) -> dict[str, Any]:
    """Part 1: a gunicorn server for ``side`` (full or shared) on a fresh spool, one wrk run."""
    secret = secrets.token_hex(32)  # per run, never stored
    data_dir, metrics = workdir / "data", workdir / "metrics"
    metrics.mkdir(parents=True)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics))
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(database(cluster)) if side == "shared" else ""
        env |= {DATA_DIR_ENV: str(data_dir), SECRET_ENV: secret, SPOOL_URL_ENV: url}
        receive.write_lua(workdir / "post.lua", receive.event_body(), secret)
        process, base = receive.start_server(f"bench.apps:{side}", workdir, args, env)
        try:
            result = measure(f"{base}/webhooks/{SOURCE}", workdir / "post.lua", args)
        finally:
            receive.stop_server(process)
        spool = data_dir / "spool"
        result["spool_records"] = spool_rows(url) if url else receive.spooled_records(spool)
    shutil.rmtree(data_dir, ignore_errors=True)
    # Every 2xx must be stored; requests cut off when wrk stopped may add a few more.
    return result | {"side": side, "spool_ok": result["spool_records"] >= result["acknowledged"]}


def started(command: list[str], ready: str, log: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own; return it once ``ready`` answers 200."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True, **popen)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(requests.RequestException):
            if requests.get(ready, headers={"Connection": "close"}, timeout=1).status_code == 200:
                return process
        time.sleep(0.1)
    kill_group(process)
    raise RuntimeError(f"not ready: {command[:4]}\n{log.read_text(errors='replace')[-3000:]}")


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group we started in a session of its own (a receiver and its
    gunicorn workers, or nginx and its worker)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def nginx_config(directory: Path, ports: list[int], listen: int) -> Path:
    """The two-receiver example in front of ``ports``, over plain HTTP, in a main config."""
    text = EXAMPLE.read_text()
    swaps = [("listen 443 ssl;", f"listen 127.0.0.1:{listen};")]
    swaps += [(f"server 10.0.0.1{n}:8025", f"server 127.0.0.1:{p}") for n, p in enumerate(ports, 1)]
    for old, new in swaps:
        if old not in text:
            raise RuntimeError(f"{EXAMPLE.name} no longer has {old!r}")
        text = text.replace(old, new)
    unused = ("ssl_", "server 10.0.0.")  # the TLS lines; the second receiver when there is one
    lines = [line for line in text.splitlines() if not line.strip().startswith(unused)]
    directory.mkdir(parents=True)
    (directory / "receivers.conf").write_text("\n".join(lines) + "\n")
    user = "user root;\n" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(user + NGINX_MAIN.replace("{dir}", str(directory)))
    return directory / "nginx.conf"


@contextlib.contextmanager
def receivers(
    workdir: Path, hosts: int, proxied: bool, env: dict[str, str], args: argparse.Namespace
) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], list[int]]]:
    """``hosts`` ``mailpulse serve`` processes, nginx in front if ``proxied``: the URL to load,
    the receivers and their ports. Receivers are SIGKILLed at the end (a graceful stop would
    flush the whole backlog into the lake first)."""
    workdir.mkdir(parents=True)
    ports, processes, nginx = [free_port() for _ in range(hosts)], [], None
    try:
        for host, port in enumerate(ports):
            config = workdir / f"host{host}.toml"  # credentials from the environment
            config.write_text(
                f'data_dir = "{workdir / f"host{host}"}"\n\n[receiver]\n'
                f"flush_interval_seconds = 3600\ntrusted_proxy_hops = {int(proxied)}\n"
                f"spool_max_bytes = {64 * 1024**3}\n\n"  # nothing drains it during a run
                f'[spool]\nengine = "postgres"\nurl_env = "{SPOOL_URL_ENV}"\n\n'
                f'[sources.{SOURCE}]\nprovider = "generic"\nsecret_env = "{SECRET_ENV}"\n\n'
                f'[sources.{BATCH_SOURCE}]\nprovider = "sendgrid"\npublic_key_env = "{KEY_ENV}"\n'
            )
            command = [sys.executable, "-m", "mailpulse", "serve", "--config", str(config)]
            command += [f"--port={port}", f"--workers={args.workers}", f"--threads={args.threads}"]
            ready, log = f"http://127.0.0.1:{port}/readyz", config.with_suffix(".log")
            processes.append(started(command, ready, log, cwd=workdir, env=env))
        base = f"http://127.0.0.1:{ports[0]}"
        if proxied:
            listen, directory = free_port(), workdir / "nginx"
            config = nginx_config(directory, ports, listen)
            command = ["nginx", "-p", str(directory), "-c", str(config), "-g", "daemon off;"]
            command += ["-e", str(directory / "error.log")]
            base = f"http://127.0.0.1:{listen}"
            nginx = started(command, f"{base}/readyz", directory / "nginx.out")
        yield base, processes, ports
    finally:
        if nginx is not None:
            nginx.terminate()  # the nginx master we started: fast shutdown
            nginx.wait(timeout=30)
        for process in processes:
            kill_group(process)


def serve_case(
    case: str, request: Any, key: str, workdir: Path, args: argparse.Namespace, cluster: Any
) -> dict[str, Any]:
    """Part 2: receivers for ``case`` on a fresh database; single events, then batches."""
    hosts, proxied, secret = (2 if case == "pair" else 1), case != "direct", secrets.token_hex(32)
    with database(cluster) as url:
        env = dict(os.environ) | {SPOOL_URL_ENV: url, SECRET_ENV: secret, KEY_ENV: key}
        with receivers(workdir, hosts, proxied, env, args) as (base, _, _):
            receive.write_lua(workdir / "single.lua", receive.event_body(), secret)
            receive_batches.write_lua(workdir / "batch.lua", request)
            single = measure(f"{base}/webhooks/{SOURCE}", workdir / "single.lua", args)
            batch = measure(f"{base}/webhooks/{BATCH_SOURCE}", workdir / "batch.lua", args)
        records = spool_rows(url)
    batch["events_per_s"] = batch["rps"] * BATCH
    ok = records >= single["acknowledged"] + batch["acknowledged"]
    result = {"single": single, "batch": batch, "case": case, "spool_records": records}
    return result | {"non2xx": single["non2xx"] + batch["non2xx"], "spool_ok": ok}


def send(url: str, secret: str, stop: threading.Event, attempts: list[Any]) -> None:
    """Post unique signed events until ``stop``; note (start, end, succeeded) per attempt."""
    session = requests.Session()
    while not stop.is_set():
        body, now = receive.event_body(), int(time.time())
        headers = {"Content-Type": "application/json", "X-Webhook-Timestamp": str(now)}
        headers["X-Webhook-Signature"] = sign(secret, now, body)
        begun = time.monotonic()
        try:
            answer = session.post(url, data=body, headers=headers, timeout=TIMEOUT)
            ok = 200 <= answer.status_code < 300
        except requests.RequestException:
            ok = False
        attempts.append((begun, time.monotonic(), ok))


def recovery(attempts: list[tuple[float, float, bool]], killed: float) -> dict[str, Any]:
    """The sender's view after the kill: when failures stopped for ``STEADY`` s, how many."""
    after = sorted((a for a in attempts if a[1] >= killed), key=lambda a: a[1])
    recovered = killed
    for _, end, ok in after:
        if end > recovered + STEADY:
            break
        if not ok:
            recovered = end  # a failure inside the window: the clean 2 s start again
    slowest = max((a[1] - a[0] for a in after), default=0.0) * 1e3
    result = {"recovery_s": recovered - killed, "failed": sum(not a[2] for a in after)}
    return result | {"attempts": len(after), "slowest_ms": slowest}


def failover_run(workdir: Path, key: str, args: argparse.Namespace, cluster: Any) -> Any:
    """Part 3: two receivers behind nginx under a sender; one killed; the sender's view."""
    secret, stop = secrets.token_hex(32), threading.Event()
    attempts: list[tuple[float, float, bool]] = []
    with database(cluster) as url:
        env = dict(os.environ) | {SPOOL_URL_ENV: url, SECRET_ENV: secret, KEY_ENV: key}
        with receivers(workdir, 2, True, env, args) as (base, processes, ports):
            job = (f"{base}/webhooks/{SOURCE}", secret, stop, attempts)
            senders = [threading.Thread(target=send, args=job) for _ in range(SENDERS)]
            for thread in senders:
                thread.start()
            time.sleep(KILL_AFTER)
            killed, killed_wall = time.monotonic(), time.time()
            kill_group(processes[0])
            # Until no failure for STEADY s, plus a whole timeout for requests still in flight.
            while time.monotonic() - killed < CAP:
                time.sleep(0.1)
                last = max([killed] + [a[1] for a in list(attempts) if not a[2]])
                if time.monotonic() - last > STEADY + TIMEOUT:
                    break
            stop.set()
            for thread in senders:
                thread.join()
        records = spool_rows(url)
    result = recovery(attempts, killed) | {"acknowledged": sum(a[2] for a in attempts)}
    # nginx's view: requests after the kill that tried the dead receiver, then the other one.
    log = (workdir / "nginx" / "access.log").read_text().splitlines()
    dead = [float(line.split()[0]) - killed_wall for line in log if f":{ports[0]}" in line]
    dead = [seconds for seconds in dead if seconds >= 0]
    result |= {"dead_tries": len(dead), "last_dead_try_s": max(dead, default=0.0)}
    return result | {"spool_records": records, "spool_ok": records >= result["acknowledged"]}


def check(label: str, run: dict[str, Any], failures: list[str]) -> None:
    """Note a run's non-2xx answers, and acknowledged requests missing from its spool."""
    if run.get("non2xx"):
        failures.append(f"{label}: {run['non2xx']} non-2xx answers")
    if not run["spool_ok"]:
        failures.append(f"{label}: {run['spool_records']} spool records, fewer than acknowledged")


def medians(runs: list[dict[str, Any]], keys: tuple[str, ...] = KEYS) -> dict[str, float]:
    """The median of each of ``keys`` over ``runs``."""
    return {key: float(statistics.median(run[key] for run in runs)) for key in keys}


def row(run: dict[str, Any]) -> str:
    """req/s, p50 and p99 of one wrk run (or their medians)."""
    return f"{run['rps']:8.1f} req/s  p50 {run['p50_ms']:7.2f} ms  p99 {run['p99_ms']:7.2f} ms"


def part_engines(tmp: Path, args: argparse.Namespace, cluster: Any, failures: list[str]) -> Any:
    """Part 1: the rounds, the medians and the verdicts."""
    runs: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        for side in ("full", "shared"):
            run = engine_run(side, tmp / f"{side}-{number}", args, cluster) | {"round": number}
            runs.append(run)
            check(f"round {number} {side}", run, failures)
            print(f"round {number} {side:6}: {row(run)}  non-2xx {run['non2xx']}  spool", end="")
            print(f" {run['spool_records']} records / {run['acknowledged']} acknowledged")
    summary = {side: medians([r for r in runs if r["side"] == side]) for side in ("full", "shared")}
    print(f"median embedded (SQLite):    {row(summary['full'])}")
    print(f"median shared (PostgreSQL):  {row(summary['shared'])}")
    ratio = 100.0 * summary["shared"]["rps"] / summary["full"]["rps"]
    p99 = summary["shared"]["p99_ms"]
    verdicts = {"ratio": ratio >= TARGET_RATIO, "p99": p99 < TARGET_P99_MS}
    print(
        f"shared/embedded req/s: {ratio:.1f} % (target >= {TARGET_RATIO:.0f} %):"
        f" {VERDICT[verdicts['ratio']]}\nshared p99: {p99:.2f} ms"
        f" (target < {TARGET_P99_MS:.0f} ms): {VERDICT[verdicts['p99']]}\n"
    )
    return {"runs": runs, "median": summary, "ratio_percent": ratio, "pass": verdicts}


def part_pair(tmp: Path, args: argparse.Namespace, cluster: Any, failures: list[str]) -> Any:
    """Part 2: the cases alternating round by round, the medians and the pair's ratios."""
    request, key, _ = receive_batches.signed_batch()
    runs: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        for case, label in CASES.items():
            run = serve_case(case, request, key, tmp / f"{case}-{number}", args, cluster)
            runs.append(run | {"round": number})
            check(f"round {number} {label}", run, failures)
            print(f"round {number} {label:20}  single {row(run['single'])}")
            print(f"{'':29}batches {row(run['batch'])}")
    summary: dict[str, dict[str, Any]] = {}
    for case, label in CASES.items():
        mine = [run for run in runs if run["case"] == case]
        summary[case] = {kind: medians([run[kind] for run in mine]) for kind in BOTH}
        batch = summary[case]["batch"] | {"events_per_s": summary[case]["batch"]["rps"] * BATCH}
        summary[case]["batch"] = batch
        print(f"median {label:20}  single {row(summary[case]['single'])}")
        print(f"{'':28}batches {row(batch)} = {batch['events_per_s']:,.0f} events/s")
    ratios, pair = {}, summary["pair"]
    for kind in BOTH:
        for case in ("one", "direct"):
            ratios[f"{kind}/{case}"] = 100 * pair[kind]["rps"] / summary[case][kind]["rps"]
    print(
        "two behind nginx / one behind nginx: single {single/one:.1f} %, batches {batch/one:.1f} %"
        "\ntwo behind nginx / one direct: single {single/direct:.1f} %, batches"
        " {batch/direct:.1f} %\n".format_map(ratios)
    )
    return {"runs": runs, "median": summary, "ratio_percent": ratios}


def part_failover(tmp: Path, args: argparse.Namespace, cluster: Any, failures: list[str]) -> Any:
    """Part 3: the failover runs, their median and worst."""
    runs, (_, key, _) = [], receive_batches.signed_batch()  # the config names both sources
    columns = ("recovery_s", "failed", "attempts", "slowest_ms", "dead_tries", "last_dead_try_s")
    print(f"{'run':8}" + "".join(f"{name:>16}" for name in columns))
    for number in range(1, args.failovers + 1):
        run = failover_run(tmp / f"failover-{number}", key, args, cluster) | {"round": number}
        runs.append(run)
        check(f"failover {number}", run, failures)
        print(f"{number:<8}" + "".join(f"{run[name]:16.5g}" for name in columns))
    summary = {"median": medians(runs, columns)}
    summary["max"] = {key: float(max(run[key] for run in runs)) for key in columns}
    for name, values in summary.items():
        print(f"{name:8}" + "".join(f"{values[key]:16.5g}" for key in columns))
    print()
    return {"runs": runs} | summary


PARTS = {
    "engines": ("1. Engines, one host: embedded SQLite against shared PostgreSQL", part_engines),
    "pair": ("2. mailpulse serve on PostgreSQL: one direct, one and two behind nginx", part_pair),
    "failover": ("3. Failover: SIGKILL one of two receivers behind nginx", part_failover),
}


def main(argv: list[str] | None = None) -> int:
    """Run the parts asked for, print their tables, and return the exit status."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    receive.add_run_arguments(parser, duration=10, warmup=2, rounds=3)
    parser.add_argument("--failovers", type=int, default=3, help="failover runs (part 3)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        parser.error("wrk and nginx are needed (apt-get install -y wrk nginx)")
    if args.warmup <= 0 or args.warmup + args.duration >= 250:
        parser.error("the warm-up must be positive, and with the run under 250 s (signatures)")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{uptime}; {os.cpu_count()} CPUs; {args.workers} x {args.threads} threads;", end="")
    print(f" wrk -t{args.threads_wrk} -c{args.connections} -d{args.duration:g}s, warm-up", end="")
    print(f" {args.warmup:g}s; {args.rounds} round(s), {args.failovers} failover(s)\n")
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "uptime": uptime}
    report["settings"] = {k: str(v) for k, v in vars(args).items()}
    failures: list[str] = []
    with postgres.cluster() as cluster, tempfile.TemporaryDirectory(prefix="mp-shared-") as tmp:
        for part in args.parts:
            print(PARTS[part][0])
            report[part] = PARTS[part][1](Path(tmp), args, cluster, failures)
    for failure in failures:
        print(f"FAILURE: {failure}")
    if args.json:
        args.json.write_text(json.dumps(report | {"failures": failures}, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
