"""Actions: the receiver's 2xx to the destination, and the receiver's req/s with actions running.

Both parts run the real ``mailpulse serve`` (tailer, dispatcher and flusher threads included) on
127.0.0.1 with a fresh data dir, a generic source and, where actions run, one webhook action
``crm`` on human clicks, posting to a destination here that answers after 5 ms. Latency: paced
batches of 10 events (one a human click); arrival minus the sender's 2xx. Throughput: ``wrk``
with distinct signed events without and with the action, alternately. See BENCHMARKS.md.

    .venv/bin/python bench/actions.py [--latency-duration 20] [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.destination import destination  # noqa: E402
from bench.receive import lua_string, parse_wrk, run_wrk  # noqa: E402
from ingest.providers.generic import sign  # noqa: E402
from mailpulse import lake  # noqa: E402
from mailpulse.demo import free_port  # noqa: E402

TARGET_P99_S = 1.0
TARGET_RATIO = 90.0  # req/s with actions as a percentage of without
SOURCE = "bench"
SOURCE_ENV, ACTION_ENV = "MAILPULSE_BENCH_SOURCE_SECRET", "MAILPULSE_BENCH_ACTION_SECRET"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile"
VERDICT = {True: "PASS", False: "MISS"}
Row = tuple[str, str, str]  # figure, value, target and verdict
# A wrk script: each thread takes every n-th line (signature TAB body) of the data file.
LUA = """local path, threads, requests, i, n = %s, %d, {}, 0, 0
function setup(thread) thread:set("id", n); n = n + 1 end
function init(args)
  local k, headers = 0, {["Content-Type"] = "application/json", ["X-Webhook-Timestamp"] = "%d"}
  for line in io.lines(path) do
    if k %% threads == id then
      headers["X-Webhook-Signature"], body = line:match("^([^\t]+)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", "/webhooks/%s", headers, body)
    end
    k = k + 1
  end
end
function request() i = i %% #requests + 1; return requests[i] end
"""


def events(prefix: str, count: int) -> list[dict[str, Any]]:
    """``count`` generic events; every 10th (from the first) a click from a desktop Chrome
    (classified ``human``), the others deliveries and opens."""
    kinds = ("clicked", *("delivered", "opened") * 4, "delivered")
    made = []
    for k in range(count):
        kind, event_id = kinds[k % 10], f"{prefix}-{k}"
        found = {"id": event_id, "type": kind, "timestamp": round(time.time(), 3)}
        found |= {"email": f"{event_id}@example.com", "campaign": "bench-actions"}
        if kind != "delivered":
            found["user_agent"] = CHROME if kind == "clicked" else IPHONE
        made.append(found | ({"url": "https://shop.example.com/p/42"} if kind == "clicked" else {}))
    return made


def write_config(workdir: Path, with_action: bool, action_url: str) -> Path:
    """A mailpulse.toml with the source ``bench`` and, ``with_action``, the action ``crm``."""
    lines = [f'data_dir = "{workdir / "data"}"', "", "[receiver]", "flush_interval_seconds = 5"]
    lines += ["", f"[sources.{SOURCE}]", 'provider = "generic"', f'secret_env = "{SOURCE_ENV}"']
    if with_action:
        lines += ["", "[actions.crm]", 'do = "webhook"', f'url = "{action_url}"']
        lines += [f'secret_env = "{ACTION_ENV}"', 'event_types = ["clicked"]', 'agents = ["human"]']
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "mailpulse.toml").write_text("\n".join(lines) + "\n")
    return workdir / "mailpulse.toml"


def start_serve(
    config: Path, workdir: Path, secret: str, args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], str]:
    """``mailpulse serve`` on a free port; returned once ``/readyz`` answers 200."""
    port = free_port()
    env = dict(os.environ, **{SOURCE_ENV: secret})
    env[ACTION_ENV] = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    command = [sys.executable, "-m", "mailpulse", "serve", "--config", str(config)]
    command += ["--port", str(port), "--workers", str(args.workers), "--threads", str(args.threads)]
    with open(workdir / "server.log", "ab") as log:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=log, start_new_session=True
        )
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            answer = requests.get(f"{base}/readyz", headers={"Connection": "close"}, timeout=5)
            if answer.status_code == 200:
                return process, base
        except requests.RequestException:
            time.sleep(0.1)
    stop_serve(process)
    raise RuntimeError(f"the server did not start:\n{(workdir / 'server.log').read_text()}")


def stop_serve(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (graceful: it flushes), SIGKILL it if it hangs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def send_paced(url: str, secret: str, args: argparse.Namespace) -> dict[str, Any]:
    """Signed batches at ``--rate`` events/s in total from ``--senders`` threads; after the
    warm-up: each click's 2xx time, events acknowledged, failed requests, answer times."""
    rate, start = args.rate / args.batch, time.monotonic() + 0.5
    measure_from = start + args.warmup
    end, lock = measure_from + args.latency_duration, threading.Lock()
    got: dict[str, Any] = {"acks": {}, "events": 0, "failed": 0, "answers": []}

    def loop(worker: int) -> None:
        session = requests.Session()
        for n in itertools.count():
            due = start + (n * args.senders + worker) / rate
            if due >= end:
                return
            time.sleep(max(0.0, due - time.monotonic()))
            batch = events(f"lat-{worker}-{n}", args.batch)
            body, stamp = orjson.dumps(batch), int(time.time())
            headers = {"Content-Type": "application/json", "X-Webhook-Timestamp": str(stamp)}
            headers["X-Webhook-Signature"] = sign(secret, stamp, body)
            sent = time.time()
            try:
                status = session.post(url, data=body, headers=headers, timeout=10).status_code
            except requests.RequestException:
                status = 0
            acked = time.time()
            with lock:
                if due < measure_from:
                    continue
                if not 200 <= status < 300:
                    got["failed"] += 1
                    continue
                got["events"] += len(batch)
                got["answers"].append(acked - sent)
                got["acks"].update({e["id"]: acked for e in batch if e["type"] == "clicked"})

    with ThreadPoolExecutor(args.senders) as pool:
        list(pool.map(loop, range(args.senders)))
    return got


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of ``values`` (NaN when empty)."""
    ordered = sorted(values) or [float("nan")]
    return ordered[min(len(ordered) - 1, max(0, round(share / 100 * len(ordered)) - 1))]


def run_latency(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Part 1: paced load with the action running; the 2xx-to-destination latency of each
    click, split at the moment the tailer recorded it (the outbox row's ``created_at``)."""
    secret = os.urandom(24).hex()
    with destination(args.delay) as (url, arrivals):
        process, base = start_serve(write_config(workdir, True, url), workdir, secret, args)
        try:
            got = send_paced(f"{base}/webhooks/{SOURCE}", secret, args)
            acks, deadline = got["acks"], time.monotonic() + 10  # then a click is missing
            while time.monotonic() < deadline and not acks.keys() <= arrivals.keys():
                time.sleep(0.05)
        finally:
            stop_serve(process)
        arrived = {i: at for i, at in arrivals.items() if i in acks}
    with closing(
        sqlite3.connect(f"file:{workdir}/data/spool/spool.sqlite?mode=ro", uri=True)
    ) as db:
        rows = db.execute("SELECT event_id, created_at FROM outbox WHERE action = 'crm'")
        recorded = {i: at for i, at in rows if i in acks}  # late ones wait there for a restart
    latencies = [at - acks[i] for i, at in arrived.items()]
    tailer = [at - acks[i] for i, at in recorded.items() if i in arrived]
    dispatch = [arrived[i] - at for i, at in recorded.items() if i in arrived]
    found = {"events_per_s": got["events"] / args.latency_duration, "clicks": len(acks)}
    found |= {"delivered": len(arrived), "missing": len(acks) - len(arrived)}
    found["lost"] = len(acks.keys() - arrived.keys() - recorded.keys())  # not even recorded
    found |= {"failed_requests": got["failed"], "max_s": max(latencies, default=float("nan"))}
    found["answer_p99_s"] = percentile(got["answers"], 99)
    for name, values in (("", latencies), ("tail_", tailer), ("send_", dispatch)):
        found |= {f"{name}p{share}_s": percentile(values, share) for share in (50, 99)}
    return found


def write_load(workdir: Path, name: str, secret: str, count: int, threads: int) -> Path:
    """A wrk script cycling through ``count`` distinct signed single-event requests."""
    stamp = int(time.time())  # the generic source accepts 300 s either way
    data = workdir / f"{name}.tsv"
    with open(data, "wb") as out:
        for found in events(f"{workdir.name}-{name}", count):
            body = orjson.dumps(found)
            out.write(sign(secret, stamp, body).encode() + b"\t" + body + b"\n")
    script = workdir / f"{name}.lua"
    script.write_text(LUA % (lua_string(str(data).encode()), threads, stamp, SOURCE))
    return script


def settle(arrivals: dict[str, float], data_dir: Path, before: int) -> dict[str, Any]:
    """Once the tailer has caught up and the outbox is drained (at most 30 s): the action's
    figures for the side, from ``state/actions.json`` and the destination."""
    deadline, last, status = time.monotonic() + 30, -1, {}
    while time.monotonic() < deadline:
        time.sleep(1.5)  # the dispatcher publishes its status every second
        status = lake.read_status(data_dir / "state", name=lake.ACTIONS_STATUS_FILE)
        row = status.get("actions", {}).get("crm", {})
        recorded = sum(row.get(k, 0) for k in ("delivered", "pending", "sending", "dead"))
        if recorded == last and row.get("pending", 0) + row.get("sending", 0) == 0:
            break
        last = recorded
    counts = sum(status.get("latency", {}).get("counts", {}).get("crm", []))
    total = status.get("latency", {}).get("sum", {}).get("crm", 0.0)
    return {
        "recorded": last,
        "delivered": status.get("outcomes", {}).get("crm", {}).get("delivered", 0),
        "arrived": len(arrivals) - before,
        "mean_latency_s": total / counts if counts else float("nan"),
    }


def run_side(
    side: str, workdir: Path, crm: tuple[str, dict[str, float]], args: argparse.Namespace
) -> dict[str, Any]:
    """One warm-up and one measured wrk run against a fresh server and data dir."""
    secret = os.urandom(24).hex()
    config = write_config(workdir, side == "with", crm[0])
    warm_count = max(5_000, int(args.requests * args.warmup / args.duration))
    warm = write_load(workdir, "warm", secret, warm_count, args.threads_wrk)
    measured = write_load(workdir, "run", secret, args.requests, args.threads_wrk)
    before = len(crm[1])
    process, base = start_serve(config, workdir, secret, args)
    try:
        url = f"{base}/webhooks/{SOURCE}"
        if args.warmup > 0:
            run_wrk(url, warm, args.warmup, args)
        result = parse_wrk(run_wrk(url, measured, args.duration, args)) | {"side": side}
        if side == "with":
            result |= settle(crm[1], workdir / "data", before)
    finally:
        stop_serve(process)
    result["wrapped"] = result["requests"] > args.requests  # ids repeated: dedup'd, not acted on
    return result


def run_throughput(workdir: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """Part 2: without and with the action, alternately, ``--rounds`` times each; the runs and
    the ratio of the sides' median req/s (%)."""
    runs: list[dict[str, Any]] = []
    with destination(args.delay) as crm:
        for number in range(1, args.rounds + 1):
            for side in ("without", "with"):
                r = run_side(side, workdir / f"{side}-{number}", crm, args) | {"round": number}
                runs.append(r)
                extra = " (the requests wrapped round)" if r["wrapped"] else ""
                if side == "with":
                    extra += f"  crm: {r['recorded']} recorded, {r['delivered']} delivered,"
                    extra += f" {r['arrived']} arrived, mean {r['mean_latency_s']:.3f} s"
                print(
                    f"round {number} {side:7}: {r['rps']:8.1f} req/s  p99 {r['p99_ms']:6.2f} ms"
                    f"  non-2xx {r['non2xx']}{extra}",
                    flush=True,
                )
    without, with_ = ([r["rps"] for r in runs if r["side"] == side] for side in ("without", "with"))
    return runs, 100 * statistics.median(with_) / statistics.median(without)


def rows(latency: dict[str, Any], runs: list[dict[str, Any]], ratio: float) -> list[Row]:
    """The table: figure, value, target and verdict."""
    ms = {key: f"{value * 1000:.0f} ms" for key, value in latency.items() if key.endswith("_s")}
    table: list[Row] = []
    if latency:
        clicks = f"{latency['delivered']} / {latency['clicks']}"
        p99_ok = latency["p99_s"] < TARGET_P99_S
        tailer, dispatch = (f"{ms[f'{n}_p50_s']} / {ms[f'{n}_p99_s']}" for n in ("tail", "send"))
        table += [
            ("acknowledged events/s (paced)", f"{latency['events_per_s']:,.0f}", "1,000"),
            ("clicks delivered / acknowledged", clicks, f"all: {VERDICT[not latency['missing']]}"),
            ("  missing after 10 s; of them lost", f"{latency['missing']}; {latency['lost']}", "0"),
            ("2xx -> destination p50", ms["p50_s"], ""),
            ("2xx -> destination p99", ms["p99_s"], f"< 1,000 ms: {VERDICT[p99_ok]}"),
            ("2xx -> destination max", ms["max_s"], ""),
            ("  2xx -> recorded p50 / p99", tailer, ""),
            ("  recorded -> arrival p50 / p99", dispatch, ""),
            ("receiver answer p99 (paced)", ms["answer_p99_s"], ""),
        ]
    for side in ("without", "with") if runs else ():
        mine = [r for r in runs if r["side"] == side]
        rps, p99 = (statistics.median(r[key] for r in mine) for key in ("rps", "p99_ms"))
        each = " / ".join(f"{r['rps']:,.0f}" for r in mine)
        table.append((f"req/s {side} actions (rounds)", each, ""))
        table.append(("  median; wrk p99", f"{rps:,.0f}; {p99:.1f} ms", ""))
    verdict = VERDICT[ratio >= TARGET_RATIO]
    return table + ([("with / without", f"{ratio:.1f} %", f">= 90 %: {verdict}")] if runs else [])


OPTIONS: list[tuple[str, type, Any, str]] = [
    ("--latency-duration", float, 20.0, "seconds of paced load measured (latency)"),
    ("--rate", float, 1000.0, "events/s of the paced load"),
    ("--batch", int, 10, "events per paced request"),
    ("--senders", int, 4, "paced sender threads"),
    ("--delay", float, 0.005, "seconds the destination takes to answer"),
    ("--duration", float, 10.0, "seconds per measured wrk run (throughput)"),
    ("--warmup", float, 2.0, "seconds of warm-up per run, both parts"),
    ("--rounds", int, 3, "without+with pairs (throughput)"),
    ("--requests", int, 40_000, "distinct signed requests per measured wrk run"),
    ("--workers", int, 2, "server worker processes"),
    ("--threads", int, 8, "threads per worker"),
    ("--connections", int, 16, "wrk connections"),
    ("--threads-wrk", int, 2, "wrk threads"),
]


def main(argv: list[str] | None = None) -> int:
    """Run the parts, print the table; exit 1 only when a check fails: a non-2xx, an
    acknowledged click neither delivered nor in the outbox (not on a MISS)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--parts", choices=("both", "latency", "throughput"), default="both")
    for flag, kind, default, text in OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"serve {args.workers}x{args.threads}; load average {load:.2f}, {os.cpu_count()} CPUs")
    latency: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    ratio = float("nan")
    with tempfile.TemporaryDirectory(prefix="mailpulse-bench-actions-") as tmp:
        if args.parts in ("both", "latency"):
            latency = run_latency(Path(tmp) / "latency", args)
            print("latency: " + json.dumps({k: round(v, 4) for k, v in latency.items()}))
        if args.parts in ("both", "throughput"):
            runs, ratio = run_throughput(Path(tmp), args)
    print(f"\n{'figure':34}{'value':>22}  target")
    for name, value, target in rows(latency, runs, ratio):
        print(f"{name:34}{value:>22}  {target}")
    failures = [f"{r['round']} {r['side']}: {r['non2xx']} non-2xx" for r in runs if r["non2xx"]]
    if latency and (latency["lost"] or latency["failed_requests"]):
        failures.append("latency: acknowledged clicks lost (not in the outbox), or requests failed")
    for failure in failures:
        print(f"FAILURE: {failure}")
    if args.json:
        summary = {"date": time.strftime("%F %R UTC", time.gmtime()), "load": load}
        summary |= {"latency": latency, "runs": runs, "ratio_percent": ratio}
        summary |= {"failures": failures, "settings": {k: str(v) for k, v in vars(args).items()}}
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
