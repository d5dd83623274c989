"""Generate a realistic events lake for benchmarks: ``python bench/lake_generator.py``.

Defaults match the analytics benchmark: about 10,000,000 events over 90 days, 200 campaigns,
1,000,000 recipients, one Parquet file per UTC date (as after ``mailpulse compact``), written
with the same schema and atomic writes as the flusher. Deterministic for a seed.

Per message: a sent event (unless dropped), then a delivery, a hard or soft bounce (some soft
bounces are delivered later) or a deferral before delivery; human opens (1-3), Apple proxy
and Gmail proxy opens; human clicks and security-scanner bursts right after delivery;
complaints and unsubscribes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailpulse import lake  # noqa: E402
from mailpulse.storage import LakeStore  # noqa: E402

DOMAINS = [
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "hotmail.com",
    "corp-a.example",
    "corp-b.example",
    "fastmail.com",
]
DOMAIN_WEIGHTS = [0.35, 0.12, 0.10, 0.12, 0.06, 0.10, 0.10, 0.05]
MICROS = 1_000_000
EVENTS_PER_MESSAGE = 2.9  # what the outcome mix below produces on average


def generate(
    out: Path,
    *,
    events: int = 10_000_000,
    days: int = 90,
    campaigns: int = 200,
    recipients: int = 1_000_000,
    seed: int = 1,
    end: float | None = None,
    chunk_messages: int = 4_000_000,
) -> int:
    """Write the lake under ``out`` (a data directory); returns the number of events.

    Messages are drawn ``chunk_messages`` at a time (about 11.6 million events each, a few GB
    of memory), each chunk written as a file per date; with more than one chunk, each date's
    files are merged into one at the end. A lake of one chunk (10 million events) is the same
    for a seed as it always was.
    """
    rng = np.random.default_rng(seed)
    end_us = int((end or time.time()) * MICROS)
    start_us = end_us - days * 86_400 * MICROS
    n = int(events / EVENTS_PER_MESSAGE)
    store = LakeStore.local(out / "lake")
    domain_of: np.ndarray | None = None
    written = 0
    for chunk, first in enumerate(range(0, n, chunk_messages)):
        count = min(chunk_messages, n - first)
        parts, messages = _draw(rng, count, start_us, end_us, recipients, campaigns)
        if domain_of is None:  # drawn after the first chunk's messages, as it always was
            domain_of = rng.choice(len(DOMAINS), recipients, p=DOMAIN_WEIGHTS)
        frame = _events(parts, messages, domain_of, first_message=first, first_event=written)
        written += frame.height
        for day, (date, part) in enumerate(sorted(lake.split_by_date(frame, "events").items())):
            store.write_parquet(
                part, lake.plan_path(store, "events", date, chunk * 100_000 + day + 1)
            )
        del frame, parts
        print(f"  {written:,} events drawn", file=sys.stderr, flush=True)
    if n > chunk_messages:
        _merge_dates(store)
    return written


def _draw(
    rng: np.random.Generator,
    n: int,
    start_us: int,
    end_us: int,
    recipients: int,
    campaigns: int,
) -> tuple[list[pl.DataFrame], dict[str, np.ndarray]]:
    """The events of ``n`` messages, by kind (one frame each), and the messages' own draws."""
    sent_at = rng.integers(start_us, end_us - 3 * 86_400 * MICROS, n)
    recipient = rng.integers(0, recipients, n)
    campaign = rng.integers(0, campaigns, n)
    outcome = rng.random(n)
    dropped = outcome < 0.01
    hard = (outcome >= 0.01) & (outcome < 0.03)
    soft = (outcome >= 0.03) & (outcome < 0.06)
    soft_then_delivered = soft & (rng.random(n) < 0.4)
    delivered = ~(dropped | hard | soft) | soft_then_delivered
    deferred = delivered & ~soft & (rng.random(n) < 0.05)
    delay = rng.integers(1, 60, n) * MICROS

    parts: list[pl.DataFrame] = []

    def add(mask: np.ndarray, kind: str, offset: np.ndarray | int, **extra: object) -> None:
        index = np.flatnonzero(mask)
        frame = pl.DataFrame({"m": index, "offset": np.broadcast_to(offset, n)[index]})
        parts.append(
            frame.with_columns(
                pl.lit(kind).alias("event_type"), *(pl.lit(v).alias(k) for k, v in extra.items())
            )
        )

    add(~dropped, "sent", 0)
    add(dropped, "dropped", 0, bounce_class="invalid")
    add(hard, "bounced", delay, bounce_class="hard", smtp_status="5.1.1")
    add(soft, "bounced", delay, bounce_class="soft", smtp_status="4.2.2")
    add(deferred, "deferred", delay // 2)
    delivered_offset = np.where(soft_then_delivered, delay + 3600 * MICROS, delay)
    add(delivered, "delivered", delivered_offset)
    human_opens = delivered & (rng.random(n) < 0.25)
    for repeat in range(3):
        again = human_opens & (rng.random(n) < (1.0, 0.5, 0.25)[repeat])
        add(
            again,
            "opened",
            delivered_offset + rng.integers(60, 86_400, n) * MICROS,
            agent="human",
            agent_reason="rules v2: browser or mail client user agent",
        )
    add(
        delivered & (rng.random(n) < 0.15),
        "opened",
        delivered_offset + 5 * MICROS,
        agent="apple_mpp",
        agent_reason="rules v2: Apple Mail Privacy Protection user agent",
    )
    add(
        delivered & (rng.random(n) < 0.05),
        "opened",
        delivered_offset + 300 * MICROS,
        agent="gmail_proxy",
        agent_reason="rules v2: Google image proxy user agent",
    )
    human_clicks = delivered & (rng.random(n) < 0.06)
    add(
        human_clicks,
        "clicked",
        delivered_offset + rng.integers(120, 90_000, n) * MICROS,
        agent="human",
        agent_reason="rules v2: browser or mail client user agent",
        url="https://shop.example/offer",
    )
    scanned = delivered & (rng.random(n) < 0.02)
    for link in range(3):
        add(
            scanned,
            "clicked",
            delivered_offset + (2 + link) * MICROS,
            agent="human",
            agent_reason="rules v2: browser or mail client user agent",
            url=f"https://shop.example/link-{link}",
        )
    add(delivered & (rng.random(n) < 0.001), "complained", delivered_offset + 86_400 * MICROS)
    add(delivered & (rng.random(n) < 0.003), "unsubscribed", delivered_offset + 7200 * MICROS)

    return parts, {"sent_at": sent_at, "recipient": recipient, "campaign": campaign}


def _events(
    parts: list[pl.DataFrame],
    drawn: dict[str, np.ndarray],
    domain_of: np.ndarray,
    *,
    first_message: int,
    first_event: int,
) -> pl.DataFrame:
    """One chunk's events in the lake's schema; ids continue from earlier chunks."""
    n = len(drawn["sent_at"])
    sent_at, recipient, campaign = drawn["sent_at"], drawn["recipient"], drawn["campaign"]
    messages = pl.DataFrame(
        {
            "m": np.arange(n),
            "sent_at": sent_at,
            "recipient_domain": pl.Series(np.array(DOMAINS)[domain_of[recipient]]),
            "recipient_id": recipient,
            "campaign_id": campaign,
        }
    )
    frame = (
        pl.concat(parts, how="diagonal_relaxed")
        .join(messages, on="m", how="left")
        .with_row_index("row", offset=first_event)
        .with_columns(pl.col("m") + first_message)
        .with_columns(
            ("e" + pl.col("row").cast(pl.String)).alias("event_id"),
            ("msg-" + pl.col("m").cast(pl.String)).alias("message_id"),
            (
                "user" + pl.col("recipient_id").cast(pl.String) + "@" + pl.col("recipient_domain")
            ).alias("recipient"),
            ("campaign-" + pl.col("campaign_id").cast(pl.String).str.zfill(3)).alias("campaign"),
            (pl.col("sent_at") + pl.col("offset")).cast(lake.TIMESTAMP).alias("occurred_at"),
            (pl.col("sent_at") + pl.col("offset") + 2 * MICROS)
            .cast(lake.TIMESTAMP)
            .alias("received_at"),
            pl.lit("bench").alias("source"),
            pl.lit("generic").alias("provider"),
            pl.lit([], dtype=pl.List(pl.String())).alias("tags"),
            pl.lit("{}").alias("raw"),
            pl.lit(1, dtype=pl.Int32()).alias("parser_version"),
            pl.lit("bench").alias("request_id"),
        )
    )
    for name, dtype in lake.EVENTS_SCHEMA.items():
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(name))
    frame = frame.select([pl.col(name).cast(dtype) for name, dtype in lake.EVENTS_SCHEMA.items()])
    return frame


def _merge_dates(store: LakeStore) -> None:
    """One file per date, as after ``mailpulse compact``."""
    for day, date in enumerate(lake.partitions(store, "events")):
        files = lake.list_files(store, "events", date)
        merged = pl.read_parquet(files, hive_partitioning=False)
        store.write_parquet(merged, lake.plan_path(store, "events", date, 10_000_000 + day))
        store.remove(files)


def main() -> None:
    """Command line: generate a lake into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/lake-10m"))
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--chunk-messages", type=int, default=4_000_000, help="messages drawn at a time (memory)"
    )
    args = parser.parse_args()
    if any(args.out.glob("lake/events/date=*/*.parquet")):
        sys.exit(f"{args.out} already holds a lake; remove it first")
    started = time.perf_counter()
    count = generate(
        args.out,
        events=args.events,
        days=args.days,
        campaigns=args.campaigns,
        recipients=args.recipients,
        seed=args.seed,
        chunk_messages=args.chunk_messages,
    )
    print(f"wrote {count:,} events to {args.out} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
