"""Analytics benchmark: ``report --by campaign`` against bare DuckDB and against pandas.

Sides, each in a fresh process so its peak memory is its own, each run ``--repeat`` times
after one warm-up run (the table shows the median):

* ``registry``: ``Lake.metrics("campaign")``, every registry metric, what
  ``mailpulse report --by campaign --format json`` computes, reading the rollup that
  ``mailpulse compact`` builds (built first, and timed): its per-day totals;
* ``registry-events``: the same without the rollup, grouping every event;
* ``registry-newer-day``: the same from a rollup that leaves out the newest files holding at
  least a median day's events, as between two compactions (the messages those files mention
  are merged at read time);
* ``bare-duckdb``: the same numbers as one hand-written DuckDB query straight over the Parquet
  files: no view, no registry;
* ``bare-rollup`` and ``bare-totals``: the registry's query text, made once, run on a bare
  DuckDB connection over the per-message rollup file, and over the totals file;
* ``registry-headline`` and ``pandas``: the headline numbers (sent, delivered, bounced, bounce
  rate, unique open and click rates, complaint rate) through the registry and with pandas;
* ``cli``: the whole ``mailpulse report --by campaign --format json`` command, process start
  included; ``cli-suppressions``: the whole ``mailpulse suppressions export --format csv
  --out FILE`` command (what cron runs), the same way;
* ``suppressions`` and ``suppressions-newer-day``: the whole suppression table (what the
  dashboard's Suppressions page reads), from the rollup alone and with the newer files.

Targets: registry within 1.5x of bare DuckDB over the same rollup; registry at least 10x
faster than pandas; at 100M events, the registry within 1 s, newer day included.
The lake comes from ``bench/lake_generator.py`` (generated when missing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADLINE = [
    "sent",
    "delivered",
    "bounced",
    "bounce_rate",
    "unique_open_rate",
    "unique_click_rate",
    "complaint_rate",
]

BARE_SQL = """
WITH m AS (
    SELECT
        max(campaign) AS campaign,
        bool_or(event_type IN ('sent', 'delivered', 'deferred', 'bounced')) AS was_sent,
        bool_or(event_type = 'dropped') AS was_dropped,
        bool_or(event_type = 'deferred') AS was_deferred,
        max(CASE WHEN event_type = 'delivered' THEN occurred_at END) AS d_at,
        max(CASE WHEN event_type = 'bounced' THEN occurred_at END) AS b_at,
        arg_max(bounce_class, CASE WHEN event_type = 'bounced'
                THEN epoch_us(occurred_at) * 4 + CASE bounce_class WHEN 'hard' THEN 3
                    WHEN 'soft' THEN 2 WHEN 'undetermined' THEN 1 ELSE 0 END END) AS b_class,
        count(CASE WHEN event_type = 'opened' THEN 1 END) AS opens,
        count(CASE WHEN event_type = 'opened'
                   AND agent IN ('apple_mpp', 'gmail_proxy', 'scanner', 'bot') THEN 1 END)
            AS m_opens,
        bool_or(event_type = 'opened' AND agent = 'human') AS h_open,
        count(CASE WHEN event_type = 'clicked' THEN 1 END) AS clicks,
        count(CASE WHEN event_type = 'clicked' AND agent = 'human' THEN 1 END) AS h_clicks,
        min(CASE WHEN event_type = 'clicked' AND agent = 'human' THEN occurred_at END) AS c_first,
        max(CASE WHEN event_type = 'clicked' AND agent = 'human' THEN occurred_at END) AS c_last,
        bool_or(event_type = 'complained') AS complained,
        max(CASE WHEN event_type = 'unsubscribed' THEN occurred_at END) AS u_at,
        max(CASE WHEN event_type = 'resubscribed' THEN occurred_at END) AS r_at
    FROM read_parquet('{glob}', hive_partitioning = true)
    GROUP BY coalesce(message_id, ''), recipient
), f AS (
    SELECT *,
        d_at IS NOT NULL AND (b_at IS NULL OR d_at >= b_at) AS dl,
        b_at IS NOT NULL AND (d_at IS NULL OR d_at < b_at) AS bn,
        c_last IS NOT NULL AND NOT (d_at IS NOT NULL AND c_last < d_at + INTERVAL 10 SECOND)
            AND NOT (h_clicks >= 3 AND c_last - c_first <= INTERVAL 5 SECOND) AS hc,
        u_at IS NOT NULL AND (r_at IS NULL OR r_at < u_at) AS un
    FROM m
)
SELECT campaign,
    count_if(was_sent) AS sent, count_if(dl) AS delivered, count_if(bn) AS bounced,
    count_if(bn AND b_class = 'hard') AS hard_bounced,
    count_if(bn AND b_class = 'soft') AS soft_bounced,
    count_if(was_dropped AND NOT was_sent) AS dropped, count_if(was_deferred) AS deferred,
    count_if(dl) / nullif(count_if(dl) + count_if(bn), 0) AS delivery_rate,
    count_if(bn) / nullif(count_if(dl) + count_if(bn), 0) AS bounce_rate,
    count_if(bn AND b_class = 'hard') / nullif(count_if(dl) + count_if(bn), 0) AS hard_bounce_rate,
    count_if(dl AND h_open) AS unique_opens,
    count_if(dl AND h_open) / nullif(count_if(dl), 0) AS unique_open_rate,
    count_if(dl AND m_opens > 0 AND NOT h_open) AS machine_opens,
    sum(m_opens) / nullif(sum(opens), 0) AS machine_open_share,
    sum(opens) AS total_opens, count_if(dl AND hc) AS unique_clicks,
    count_if(dl AND hc) / nullif(count_if(dl), 0) AS unique_click_rate,
    sum(clicks) AS total_clicks,
    count_if(dl AND h_open AND hc) / nullif(count_if(dl AND h_open), 0) AS click_to_open_rate,
    count_if(complained) AS complaints,
    count_if(dl AND complained) / nullif(count_if(dl), 0) AS complaint_rate,
    count_if(un) AS unsubscribes, count_if(dl AND un) / nullif(count_if(dl), 0) AS unsubscribe_rate
FROM f GROUP BY campaign ORDER BY campaign
"""


def pandas_headline(data_dir: Path) -> Any:
    """The headline numbers per campaign with pandas, same definitions as the registry."""
    import pandas as pd

    files = sorted((data_dir / "lake" / "events").glob("date=*/*.parquet"))
    columns = ["message_id", "recipient", "campaign", "event_type", "occurred_at", "agent"]
    df = pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
    df["message_id"] = df["message_id"].fillna("")
    t = df["event_type"]
    human = df["agent"] == "human"
    df["d_at"] = df["occurred_at"].where(t == "delivered")
    df["b_at"] = df["occurred_at"].where(t == "bounced")
    df["c_at"] = df["occurred_at"].where((t == "clicked") & human)
    df["sent"] = t.isin(["sent", "delivered", "deferred", "bounced"])
    df["h_open"] = (t == "opened") & human
    df["h_click"] = (t == "clicked") & human
    df["complained"] = t == "complained"
    g = df.groupby(["message_id", "recipient"], sort=False)
    m = g.agg(
        campaign=("campaign", "max"),
        sent=("sent", "any"),
        d_at=("d_at", "max"),
        b_at=("b_at", "max"),
        h_open=("h_open", "any"),
        h_clicks=("h_click", "sum"),
        c_first=("c_at", "min"),
        c_last=("c_at", "max"),
        complained=("complained", "any"),
    )
    m["dl"] = m["d_at"].notna() & (m["b_at"].isna() | (m["d_at"] >= m["b_at"]))
    m["bn"] = m["b_at"].notna() & (m["d_at"].isna() | (m["d_at"] < m["b_at"]))
    scanner_window = m["d_at"].notna() & (m["c_last"] < m["d_at"] + pd.Timedelta(seconds=10))
    burst = (m["h_clicks"] >= 3) & (m["c_last"] - m["c_first"] <= pd.Timedelta(seconds=5))
    m["hc"] = m["c_last"].notna() & ~scanner_window & ~burst
    m["uo"] = m["dl"] & m["h_open"]
    m["uc"] = m["dl"] & m["hc"]
    m["cd"] = m["dl"] & m["complained"]
    out = m.groupby("campaign").agg(
        sent=("sent", "sum"),
        delivered=("dl", "sum"),
        bounced=("bn", "sum"),
        uo=("uo", "sum"),
        uc=("uc", "sum"),
        cd=("cd", "sum"),
    )
    out["bounce_rate"] = out["bounced"] / (out["delivered"] + out["bounced"])
    out["unique_open_rate"] = out["uo"] / out["delivered"]
    out["unique_click_rate"] = out["uc"] / out["delivered"]
    out["complaint_rate"] = out["cd"] / out["delivered"]
    return out.reset_index()[["campaign", *HEADLINE]]


def run_side(side: str, data_dir: Path, repeat: int) -> dict[str, Any]:
    """Time one side in this process; returns seconds per run, peak memory and the result."""
    from analytics import open_lake

    work: Callable[[], Any]
    from analytics import Lake

    if side == "registry":
        lake = open_lake(data_dir)
        work = lambda: lake.metrics("campaign")  # noqa: E731
    elif side == "registry-events":
        lake = Lake(data_dir, use_rollup=False)
        work = lambda: lake.metrics("campaign")  # noqa: E731
    elif side == "registry-newer-day":
        lake = open_lake(data_dir)
        work = lambda: lake.metrics("campaign")  # noqa: E731
    elif side == "registry-headline":
        lake = open_lake(data_dir)
        work = lambda: lake.metrics("campaign", metrics=HEADLINE)  # noqa: E731
    elif side in ("suppressions", "suppressions-newer-day"):
        from analytics.suppression_table import suppression_table
        from mailpulse.config import SuppressionConfig

        lake = open_lake(data_dir)
        work = lambda: suppression_table(lake, SuppressionConfig())  # noqa: E731
    elif side == "bare-duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        query = BARE_SQL.format(glob=str(data_dir / "lake/events/*/*.parquet"))
        work = lambda: con.sql(query).pl()  # noqa: E731
    elif side in ("bare-rollup", "bare-totals"):
        work = bare_rollup(data_dir, totals=side == "bare-totals")
    elif side == "pandas":
        work = lambda: pandas_headline(data_dir)  # noqa: E731
    else:
        raise SystemExit(f"unknown side {side}")
    result = work()  # warm-up: file cache, imports
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - started)
    if side.startswith("suppressions"):  # a million rows: their count says enough
        import polars as pl

        result = result.select(addresses=pl.len())
    rows = result.to_dicts() if hasattr(result, "to_dicts") else result.to_dict("records")
    return {
        "seconds": seconds,
        "rss_mb": peak_rss_mb(),
        "rows": rows,
    }


def bare_rollup(data_dir: Path, *, totals: bool = False) -> Callable[[], Any]:
    """Every metric by campaign as one DuckDB query over a rollup file alone (the per-message
    state, or the totals): the text the registry builds, made once, run on a bare connection
    (no listing, no view, no retry)."""
    import duckdb

    from analytics import queries, rollup
    from mailpulse.storage import LakeStore

    built = rollup.current(LakeStore.local(data_dir / "lake"))
    if built is None or (totals and built.totals is None):
        raise SystemExit("no rollup to read")
    if totals:
        source = f"read_parquet('{built.totals}')"
        query = queries.totals_metrics_sql("campaign", None, "day", source)
    else:
        query = queries.metrics_sql("campaign", None, "day", f"read_parquet('{built.path}')")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    params = {"since": None, "until": None, "campaign": None, "source": None}
    return lambda: con.sql(query, params=params).pl()


def peak_rss_mb() -> float:
    """This process's peak resident memory since exec (VmHWM).

    Not ru_maxrss: Linux carries that over from the parent across fork and exec, so a side
    would report the peak of the process that generated the lake.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_subprocess(side: str, data_dir: Path, repeat: int) -> dict[str, Any]:
    """Run one side in a fresh interpreter."""
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--side",
            side,
            "--data-dir",
            str(data_dir),
            "--repeat",
            str(repeat),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(output.stdout.splitlines()[-1]))


def time_cli(data_dir: Path, repeat: int, *arguments: str) -> dict[str, Any]:
    """A whole ``mailpulse`` command, process start included (default: the campaign report)."""
    env_config = data_dir / "bench-mailpulse.toml"
    env_config.write_text(f'data_dir = "{data_dir.resolve()}"\n')
    arguments = arguments or ("report", "--by", "campaign", "--format", "json")
    command = [sys.executable, "-m", "mailpulse", *arguments, "--config", str(env_config)]
    subprocess.run(command, capture_output=True, check=True)
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        seconds.append(time.perf_counter() - started)
    return {"seconds": seconds, "rss_mb": float("nan"), "rows": []}


def newest_day_left_out(store: Any, files: list[str]) -> list[str]:
    """``files`` without the newest ones that hold at least the median day's events."""
    days = sorted(files)  # one partition per day, named by date
    counts = [store.count_rows([store.path(name)]) for name in days]
    median_day = statistics.median(counts)
    left_out = 0
    while days and left_out < median_day:
        left_out += counts.pop()
        days.pop()
    print(f"newer than the rollup: {len(files) - len(days)} files, {left_out:,} events")
    return days


def agree(a: list[dict[str, Any]], b: list[dict[str, Any]], names: list[str]) -> bool:
    """True when two result sets match on ``names`` (rates to 1e-9)."""
    index = {row["campaign"]: row for row in b}
    for row in a:
        other = index.get(row["campaign"])
        if other is None:
            return False
        for name in names:
            x, y = row[name], other[name]
            if (x is None) != (y is None) or (x is not None and abs(float(x) - float(y)) > 1e-9):
                return False
    return len(a) == len(b)


def main() -> None:
    """Generate the lake if needed, run every side, print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench/results/lake-10m")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument(
        "--no-pandas", action="store_true", help="leave pandas out (a 100M lake does not fit)"
    )
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.data_dir, args.repeat), default=str))
        return
    if not any(args.data_dir.glob("lake/events/date=*/*.parquet")):
        from bench.lake_generator import generate

        print(f"generating {args.events:,} events into {args.data_dir} ...", flush=True)
        generate(args.data_dir, events=args.events)
    from analytics import rollup
    from mailpulse.storage import LakeStore

    lake_dir = LakeStore.local(args.data_dir / "lake")
    files = rollup.events_files(lake_dir)
    started = time.perf_counter()
    rollup.build(lake_dir)  # what `mailpulse compact` does when it finishes
    build_seconds = time.perf_counter() - started
    sides = ("bare-duckdb", "bare-rollup", "bare-totals", "registry-events", "registry")
    sides += ("registry-headline", "suppressions") + (() if args.no_pandas else ("pandas",))
    results = {side: in_subprocess(side, args.data_dir, args.repeat) for side in sides}
    results["cli"] = time_cli(args.data_dir, args.repeat)
    # What cron runs every night: the whole list, to a file that appears whole.
    exported = args.data_dir / "bench-suppressions.csv"
    export = ("suppressions", "export", "--format", "csv", "--out", str(exported))
    results["cli-suppressions"] = time_cli(args.data_dir, args.repeat, *export)
    with exported.open("rb") as lines:  # one line per address, after the header
        results["cli-suppressions"]["rows"] = [{"addresses": sum(1 for _ in lines) - 1}]
    # Between two compactions the flusher adds files: leave at least a day of events (the
    # median day's) out of the rollup, newest files first.
    covered = newest_day_left_out(lake_dir, files)
    rollup.build(lake_dir, covered)
    for side in ("registry-newer-day", "suppressions-newer-day"):
        results[side] = in_subprocess(side, args.data_dir, args.repeat)
    results["cli-newer-day"] = time_cli(args.data_dir, args.repeat)
    rollup.build(lake_dir)
    build_rss = peak_rss_mb()
    from analytics import REGISTRY

    all_names = [m.name for m in REGISTRY]
    same_all = all(
        agree(results[side]["rows"], results["bare-duckdb"]["rows"], all_names)
        for side in ("registry", "registry-events", "bare-rollup", "bare-totals")
        + ("registry-newer-day",)
    )
    suppressed = {results[side]["rows"][0]["addresses"] for side in results if "suppr" in side}
    same_all = same_all and len(suppressed) == 1
    reference = "registry-headline" if args.no_pandas else "pandas"
    headline = results["registry-headline"]["rows"]
    same_headline = agree(headline, results[reference]["rows"], HEADLINE)
    median = {side: statistics.median(r["seconds"]) for side, r in results.items()}
    print(
        f"\nlake: {args.data_dir} ({sum(1 for _ in args.data_dir.glob('lake/events/*/*'))} files)"
    )
    print(f"{'side':<24}{'median s':>10}  {'runs':<36}{'peak RSS MB':>12}")
    for side, result in results.items():
        runs = " ".join(f"{s:.2f}" for s in result["seconds"])
        print(f"{side:<24}{median[side]:>10.2f}  {runs:<36}{result['rss_mb']:>12.0f}")
    print(
        f"rollup build (as at the end of `mailpulse compact`): {build_seconds:.2f} s; "
        f"peak RSS of the process that built it: {build_rss:.0f} MB"
    )
    ratio_bare = median["registry"] / median["bare-duckdb"]
    ratio_pandas = median.get("pandas", float("nan")) / median["registry-headline"]
    ratio_events = median["registry-events"] / median["bare-duckdb"]
    ratio_rollup = median["registry"] / median["bare-rollup"]
    print(
        f"registry / bare DuckDB over the same rollup: {ratio_rollup:.2f}x (target <= 1.5x) "
        f"{'PASS' if ratio_rollup <= 1.5 else 'MISS'}"
    )
    print(f"registry without the rollup / bare DuckDB: {ratio_events:.2f}x")
    ratio_totals = median["registry"] / median["bare-totals"]
    print(f"registry / bare DuckDB over the same totals: {ratio_totals:.2f}x")
    for side in ("registry", "registry-newer-day"):
        print(
            f"{side}: {median[side]:.2f} s (target <= 1 s at 100M events) "
            f"{'PASS' if median[side] <= 1 else 'MISS'}"
        )
    print(
        f"\nregistry / bare DuckDB: {ratio_bare:.2f}x (target <= 1.5x) "
        f"{'PASS' if ratio_bare <= 1.5 else 'MISS'}; same numbers: {same_all}"
    )
    verdict = "skipped" if args.no_pandas else "PASS" if ratio_pandas >= 10 else "MISS"
    print(
        f"pandas / registry (headline): {ratio_pandas:.1f}x (target >= 10x) "
        f"{verdict}; same numbers: {same_headline}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"median": median, "ratio_bare": ratio_bare, "ratio_pandas": ratio_pandas}, indent=2
            )
        )
    if not (same_all and same_headline):
        raise SystemExit("the sides disagree: a benchmark of different numbers means nothing")


if __name__ == "__main__":
    main()
