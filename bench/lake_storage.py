"""Lake on object storage: a report and a flush on S3 against the same on a local directory.

The object store is moto's S3 server on loopback (``tests/s3.py``), reached through
pyarrow's S3 client with an ``endpoint_url``, as a lake on AWS or MinIO is. Two parts:

* ``report``: ``bench/lake_generator.py`` writes a lake (``--events``) into a local data
  directory, its per-message rollup is built (what ``mailpulse compact`` does when it
  finishes), and the same files (``events/`` and ``messages/``, same keys) are uploaded to a
  fresh bucket. Each side is then timed through the Python API,
  ``open_lake(config).metrics("campaign")`` (every registry metric, what
  ``report --format json`` computes), once to warm up and ``--repeat`` times (median),
  and as the whole ``mailpulse report --by campaign --format json`` command. Two parts of
  each query are timed on their own as well: the snapshot (listing the events files and
  creating the view over them) and finding the rollup (its listing and manifest).
* ``flush``: the backlog of ``bench/flush.py`` (``--flush-events`` unique events, single
  events and arrays in turn, a share resent) is spooled twice, and ``Flusher(config).flush()``
  drains one into a local lake and the other into a lake on S3, each in a fresh process.

Checks (exit status 1): every run succeeds (a run that raises is counted, not timed), both
report sides give the same numbers (API and command), and each flushed lake holds every
unique event once, a raw row per request and no quarantine. No target is set for either ratio.

    .venv/bin/python bench/lake_storage.py [--events 1000000] [--flush-events 200000] \\
        [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import flush as backlog  # noqa: E402
from mailpulse.config import Config, parse_config  # noqa: E402
from mailpulse.storage import LakeStore  # noqa: E402
from tests.s3 import S3Server, server  # noqa: E402

SIDES = ("local", "s3")


def document(
    data_dir: Path, s3: S3Server | None = None, url: str = "", source: bool = False
) -> dict[str, Any]:
    """A configuration document: the lake at ``url`` on the server (``<data_dir>/lake``
    without one); ``source`` adds the generic source the backlog is for."""
    found: dict[str, Any] = {"data_dir": str(data_dir)}
    if s3 is not None:
        keys = {"access_key_id": s3.key_id, "secret_access_key": s3.secret_key}
        found["lake"] = {"url": url, "endpoint_url": s3.endpoint, **keys}
    if source:
        secret = secrets.token_hex(32)
        found["sources"] = {backlog.SOURCE: {"provider": "generic", "secret": secret}}
    return found


def upload(local: LakeStore, s3: S3Server, root: str) -> dict[str, float]:
    """Copy the lake's events and rollup files to ``root`` (bucket/prefix), same keys."""
    import pyarrow.fs as pafs

    files = [*local.files(local.path("events")), *local.files(local.path("messages"), "")]
    started = time.perf_counter()
    for sub in ("events", "messages"):
        pafs.copy_files(
            local.path(sub),
            f"{root}/{sub}",
            source_filesystem=local.fs,
            destination_filesystem=s3.filesystem(),
        )
    size = sum(Path(stored.path).stat().st_size for stored in files)
    return {"files": len(files), "bytes": size, "seconds": time.perf_counter() - started}


def runs(work: Callable[[], object], repeat: int) -> dict[str, Any]:
    """One warm-up call of ``work``, then ``repeat`` timed ones. A call that raises is counted
    in ``errors`` and not timed; ``result`` is that of the first call that succeeded."""
    import duckdb

    seconds: list[float] = []
    errors: list[str] = []
    result: object = None
    for run in range(repeat + 1):
        started = time.perf_counter()
        try:
            value = work()
        except (duckdb.Error, RuntimeError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        if run:
            seconds.append(time.perf_counter() - started)
        result = value if result is None else result
    return {"seconds": seconds, "errors": errors, "result": result, "runs": repeat + 1}


def time_api(config: Config, repeat: int) -> dict[str, Any]:
    """``open_lake(config).metrics("campaign")`` (``runs``), and two parts of each query timed
    on their own: the snapshot (listing and view) and the rollup lookup."""
    import duckdb

    from analytics import open_lake, rollup

    try:
        lake = open_lake(config)  # takes a first snapshot
    except duckdb.Error as exc:
        failed = {"seconds": [], "errors": [f"opening: {exc}"[:300]], "result": None, "runs": 1}
        return {"api": failed, "snapshot": failed, "rollup_lookup": failed}
    try:
        return {
            "api": runs(lambda: lake.metrics("campaign").to_dicts(), repeat),
            "snapshot": runs(lake.refresh, repeat),
            "rollup_lookup": runs(lambda: rollup.current(lake.store), repeat),
        }
    finally:
        lake.close()


def time_cli(config_file: Path, repeat: int) -> dict[str, Any]:
    """The whole ``mailpulse report`` command, process start included (``runs``)."""
    command = [sys.executable, "-m", "mailpulse", "report", "--by", "campaign"]
    command += ["--format", "json", "--config", str(config_file)]

    def report() -> list[dict[str, Any]]:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError((done.stderr.strip() or f"exit {done.returncode}").splitlines()[-1])
        return list(json.loads(done.stdout))

    return runs(report, repeat)


def write_config(path: Path, data_dir: Path, s3: S3Server | None, url: str) -> Path:
    """A mailpulse.toml for the command (the keys in it: readable by its owner only)."""
    text = f"data_dir = {str(data_dir)!r}\n" + (s3.lake_table(url) if s3 else "")
    path.write_text(text)
    path.chmod(0o600)
    return path


def report_part(args: argparse.Namespace, s3: S3Server, work: Path) -> dict[str, Any]:
    """Generate and roll up a local lake, upload it, time the report on both sides."""
    from analytics import REGISTRY, rollup
    from bench.lake_generator import generate
    from bench.report import agree

    data_dir = work / "report"
    started = time.perf_counter()
    events = generate(data_dir, events=args.events)
    local = LakeStore.local(data_dir / "lake")
    rollup.build(local)
    built = time.perf_counter() - started
    root = f"{s3.new_bucket()}/lake"
    copied = upload(local, s3, root)
    print(
        f"report lake: {events:,} events in {copied['files']} files with the rollup"
        f" ({copied['bytes'] / 2**20:.1f} MiB), generated and rolled up in {built:.1f} s,"
        f" uploaded in {copied['seconds']:.1f} s",
        flush=True,
    )
    results: dict[str, Any] = {"events": events, "upload": copied}
    for side in SIDES:
        on_s3, url = (s3, f"s3://{root}") if side == "s3" else (None, "")
        toml = write_config(work / f"report-{side}.toml", data_dir, on_s3, url)
        config = parse_config(document(data_dir, on_s3, url), origin="bench", env={})
        results[side] = time_api(config, args.repeat)
        results[side]["cli"] = time_cli(toml, args.cli_repeat)
    names = [metric.name for metric in REGISTRY]
    reference = results["local"]["api"]["result"]
    results["same"] = {
        f"{side} {kind}": bool(reference and found) and agree(reference, found, names)
        for side, kind in (("local", "cli"), ("s3", "api"), ("s3", "cli"))
        for found in [results[side][kind]["result"]]
    }
    return results


def report_failures(results: dict[str, Any]) -> list[str]:
    """Runs that raised, and results that differ from the local API's."""
    failures = [
        f"report, {side} {kind}: {len(found['errors'])} of {found['runs']} runs failed;"
        f" the first: {found['errors'][0]}"
        for side in SIDES
        for kind, found in results[side].items()
        if found["errors"]
    ]
    failures += [
        f"report, {name}: not the numbers of the local API (every metric, rates to 1e-9)"
        for name, same in results["same"].items()
        if not same
    ]
    return failures


def lake_rows(store: LakeStore) -> dict[str, int]:
    """Rows, distinct ids and files of each table, read with pyarrow (not through DuckDB)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from mailpulse import lake

    counts: dict[str, int] = {}
    for table, key in (("events", "event_id"), ("raw", "request_id"), ("quarantine", "payload")):
        files = lake.list_files(store, table)
        column = pads.dataset(files, filesystem=store.fs).to_table([key])[key] if files else None
        counts[table] = len(column) if column is not None else 0
        counts[f"{table}_distinct"] = pc.count_distinct(column).as_py() if files else 0
        counts[f"{table}_files"] = len(files)
    return counts


def flush_phase() -> dict[str, Any]:
    """In a fresh process: drain the spool of the configuration document read from stdin."""
    from ingest.flush.flusher import Flusher
    from ingest.providers import PROVIDERS

    found = json.loads(sys.stdin.read())
    config = parse_config(found, origin="bench", env={}, providers=PROVIDERS)
    flusher = Flusher(config)
    started = time.perf_counter()
    result = flusher.flush()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "lake": lake_rows(config.lake_store)} | vars(result)


def flush_part(args: argparse.Namespace, s3: S3Server, work: Path) -> dict[str, Any]:
    """Spool the same backlog twice; flush one into a local lake, one into a bucket."""
    results: dict[str, Any] = {}
    for side in SIDES:
        data_dir = work / f"flush-{side}"
        spooled = backlog.build(
            data_dir, args.flush_events, args.duplicates, args.array_size, args.seed
        )
        url = f"s3://{s3.new_bucket()}/lake"
        found = document(data_dir, s3 if side == "s3" else None, url, source=True)
        done = subprocess.run(
            [sys.executable, __file__, "--phase", "flush"],
            input=json.dumps(found),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the {side} flush failed:\n{done.stdout}\n{done.stderr}")
        flushed = json.loads(done.stdout.strip().splitlines()[-1])
        results[side] = {"backlog": spooled, **flushed}
        shutil.rmtree(data_dir, ignore_errors=True)  # the spool is large; S3 keeps its lake
    return results


def flush_failures(results: dict[str, Any]) -> list[str]:
    """What each flushed lake should hold and does not."""
    failures = []
    for side in SIDES:
        spooled, lake = results[side]["backlog"], results[side]["lake"]
        expected = {
            "flushed events": (results[side]["events"], spooled["unique_events"]),
            "duplicates dropped": (results[side]["duplicates"], spooled["duplicate_events"]),
            "lake events rows": (lake["events"], spooled["unique_events"]),
            "lake distinct event ids": (lake["events_distinct"], spooled["unique_events"]),
            "lake raw rows": (lake["raw"], spooled["requests"]),
            "lake quarantine rows": (lake["quarantine"], 0),
        }
        failures += [
            f"{side} {name}: {got} != {want}"
            for name, (got, want) in expected.items()
            if got != want
        ]
    return failures


def median(values: list[float]) -> float:
    """The median, NaN for no value (every run failed)."""
    return statistics.median(values) if values else float("nan")


def print_report(results: dict[str, Any]) -> dict[str, float]:
    """The report table; returns the medians and ratios."""
    figures: dict[str, float] = {}
    print(
        f"\n{'report --by campaign':21}{'API s':>7}{'runs':>31}{'snapshot s':>11}"
        f"{'rollup lookup s':>16}{'command s':>10}{'failed':>8}"
    )
    for side in SIDES:
        found = results[side]
        figures[f"{side}_api_s"] = median(found["api"]["seconds"])
        figures[f"{side}_cli_s"] = median(found["cli"]["seconds"])
        runs = " ".join(f"{s:.2f}" for s in found["api"]["seconds"])
        failed = sum(len(part["errors"]) for part in found.values())
        print(
            f"{side:21}{figures[f'{side}_api_s']:7.3f}{runs:>31}"
            f"{median(found['snapshot']['seconds']):11.3f}"
            f"{median(found['rollup_lookup']['seconds']):16.3f}"
            f"{figures[f'{side}_cli_s']:10.2f}{failed:>4}/{sum(p['runs'] for p in found.values())}"
        )
    figures["api_ratio"] = figures["s3_api_s"] / figures["local_api_s"]
    figures["cli_ratio"] = figures["s3_cli_s"] / figures["local_cli_s"]
    print(
        f"S3 / local, API: {figures['api_ratio']:.2f}x; command: {figures['cli_ratio']:.2f}x"
        f" (no target); same numbers: {all(results['same'].values())}"
    )
    return figures


def print_flush(results: dict[str, Any]) -> dict[str, float]:
    """The flush table; returns events/s per side and the ratio."""
    figures: dict[str, float] = {}
    spooled = results["local"]["backlog"]
    print(
        f"\nflush: {spooled['unique_events']:,} unique events in {spooled['requests']:,}"
        f" requests ({spooled['duplicate_requests']:,} resent),"
        f" {spooled['bytes'] / 2**20:.0f} MiB spooled"
    )
    print(f"{'side':8}{'seconds':>9}{'events/s':>11}{'batches':>9}{'files':>7}{'event rows':>12}")
    for side in SIDES:
        flushed, lake = results[side], results[side]["lake"]
        files = lake["events_files"] + lake["raw_files"] + lake["quarantine_files"]
        figures[f"{side}_events_per_s"] = flushed["events"] / flushed["seconds"]
        print(
            f"{side:8}{flushed['seconds']:9.2f}{figures[f'{side}_events_per_s']:11.0f}"
            f"{flushed['batches']:9}{files:7}{lake['events']:12,}"
        )
    figures["flush_ratio"] = figures["s3_events_per_s"] / figures["local_events_per_s"]
    print(f"S3 / local, events/s: {figures['flush_ratio']:.2f}x (no target)")
    return figures


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the report lake")
    parser.add_argument("--repeat", type=int, default=5, help="timed API runs per side")
    parser.add_argument("--cli-repeat", type=int, default=3, help="timed commands per side")
    parser.add_argument("--flush-events", type=int, default=200_000, help="unique events spooled")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of requests resent")
    parser.add_argument("--array-size", type=int, default=10, help="events per array body")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the backlog")
    parser.add_argument("--parts", choices=("all", "report", "flush"), default="all")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--phase", choices=("flush",), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the parts against one S3 server, print the tables, return the exit status."""
    args = parse(argv)
    if args.phase == "flush":
        print(json.dumps(flush_phase()))
        return 0
    load_before = os.getloadavg()[0]  # other work on the machine skews the timings
    print(f"load average {load_before:.2f} on {os.cpu_count()} CPUs", flush=True)
    results: dict[str, Any] = {}
    figures: dict[str, float] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mailpulse-bench-s3-") as work, server() as s3:
        if args.parts in ("all", "report"):
            results["report"] = report_part(args, s3, Path(work))
            figures |= print_report(results["report"])
            failures += report_failures(results["report"])
        if args.parts in ("all", "flush"):
            results["flush"] = flush_part(args, s3, Path(work))
            figures |= print_flush(results["flush"])
            failures += flush_failures(results["flush"])
    for failure in failures:
        print(f"FAILURE: {failure}")
    if args.json:
        summary = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": {
                "nproc": os.cpu_count(),
                "python": platform.python_version(),
                "load_before": load_before,
            },
            "settings": {k: str(v) for k, v in vars(args).items()},
            "figures": figures,
            "results": results,
            "failures": failures,
        }
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
