"""``mailpulse actions``: see the outbox, send dead-lettered actions again, try a destination.

The outbox lives in the spool database (``<data_dir>/spool/spool.sqlite``), which a running
``mailpulse serve`` shares: these commands read it, and ``retry`` makes rows due again, which
the running dispatcher picks up within a second (it looks at least twice a second).
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
import polars as pl

from mailpulse.cli import cli
from mailpulse.cli.common import EXIT_FAILURE, EXIT_USAGE, config_option, load
from mailpulse.cli.output import print_frame
from mailpulse.config import Config

if TYPE_CHECKING:
    from ingest.actions.destinations.base import Answer
    from ingest.spool.outbox import Outbox, OutboxRow

#: What ``list`` shows without a filter: everything not yet delivered.
OPEN_STATES = ("pending", "sending", "dead")
#: Characters of the last answer a table shows (``--format json`` has it whole).
DETAIL_CHARS = 60
#: Characters of an answer ``test`` prints on its one line.
ANSWER_CHARS = 200
NOTHING_YET = "no actions recorded yet"
_COLUMNS = {
    "id": pl.Int64,
    "action": pl.String,
    "state": pl.String,
    "attempts": pl.Int64,
    "event_id": pl.String,
    "webhook_id": pl.String,
    "created": pl.String,
    "next_attempt": pl.String,
    "last_status": pl.Int64,
    "last_detail": pl.String,
}


@cli.group()
def actions() -> None:
    """See and retry the actions of the [actions.<name>] tables, and test a destination."""


@actions.command("list")
@config_option
@click.option("--failed", is_flag=True, help="Only pending actions that failed at least once.")
@click.option("--dead", is_flag=True, help="Only dead-lettered actions.")
@click.option("--all", "every", is_flag=True, help="Delivered actions too (kept for a week).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def actions_list(
    config_path: str | None, failed: bool, dead: bool, every: bool, limit: int, fmt: str
) -> None:
    """List recorded actions, newest first: pending, being sent and dead-lettered ones.

    --failed and --dead may be given together (failing and dead ones); times are UTC.

    \b
    Example:
        mailpulse actions list --dead
        mailpulse actions list --failed --format json
    """
    if every and (failed or dead):
        raise click.UsageError("--all lists every kept action: leave out --failed and --dead")
    config = load(config_path, announce=fmt == "table")
    outbox = _open(config)
    if outbox is None:
        _print_nothing(fmt, NOTHING_YET)
        return
    try:
        rows = _select(outbox, failed=failed, dead=dead, every=every, limit=limit)
    finally:
        outbox.close()
    if not rows:
        _print_nothing(fmt, "no actions to show" if failed or dead else "no actions waiting")
        return
    frame = _frame(rows, short=fmt == "table")
    if fmt == "table":
        # Ids are copied into `retry`: text, so they show without thousands separators.
        frame = frame.with_columns(pl.col("id").cast(pl.String))
    whole = ("id", "event_id", "webhook_id", "created", "next_attempt")
    print_frame(frame, fmt, title="actions", whole=whole)


@actions.command("retry")
@config_option
@click.argument("ids", nargs=-1, type=click.IntRange(1))
@click.option("--all-dead", is_flag=True, help="Every dead-lettered action.")
def actions_retry(config_path: str | None, ids: tuple[int, ...], all_dead: bool) -> None:
    """Send dead-lettered actions again: they become pending and due now, with a fresh
    give-up horizon; a running `mailpulse serve` sends them within a second.

    Every ID must be a dead-lettered action, or nothing is retried (exit status 1).

    \b
    Example:
        mailpulse actions retry 42 43
        mailpulse actions retry --all-dead
    """
    if bool(ids) == all_dead:
        raise click.UsageError("name the actions to retry (IDs from `list`), or --all-dead")
    config = load(config_path)
    outbox = _open(config)
    if outbox is None:
        if all_dead:
            click.echo("no dead-lettered actions to retry")
            return
        _fail([f"no action {row_id}" for row_id in dict.fromkeys(ids)])
        return
    try:
        wanted = None if all_dead else list(dict.fromkeys(ids))
        if wanted is not None:
            _fail(_not_dead(outbox, wanted))
        retried = outbox.retry(wanted, time.time())
        _warn_unconfigured(outbox, config)
    finally:
        outbox.close()
    if not retried:
        click.echo("no dead-lettered actions to retry")
        return
    noun = "action" if retried == 1 else "actions"
    click.echo(f"retried {retried} dead-lettered {noun}: pending and due now")


@actions.command("test")
@config_option
@click.argument("name")
def actions_test(config_path: str | None, name: str) -> None:
    """Send one made-up event that matches action NAME's filter to its destination, now.

    It goes straight to the destination, not through the outbox, and is never retried.
    Its ids start `mailpulse-test-`, its webhook-id `msg_test_`. A suppress action really
    adds the made-up recipient (test-recipient@<first recipient_domains, or example.com>)
    to the ESP's list. Exit status 0 when the destination took it, 1 when not.

    \b
    Example:
        mailpulse actions test crm
    """
    from ingest.actions.destinations import Delivery, build_destination
    from ingest.actions.sample import sample_event

    config = load(config_path)
    action = config.actions.get(name)
    if action is None:
        known = ", ".join(sorted(config.actions))
        where = f"configured: {known}" if known else "none is configured ([actions.<name>])"
        click.echo(f"mailpulse: no action {name!r}; {where}", err=True)
        sys.exit(EXIT_USAGE)
    event = sample_event(action, datetime.now(UTC))
    delivery = Delivery(
        id=0, action=name, webhook_id=f"msg_test_{uuid.uuid4().hex}", event=event, attempt=1
    )
    click.echo(
        f"mailpulse: sending a test {event['event_type']} event to action {name} "
        f"({_kind(action.do, action.options.get('provider'))}, webhook-id {delivery.webhook_id})",
        err=True,
    )
    try:
        destination = build_destination(action)
    except ValueError as exc:  # a validated action always has one; say so if not
        click.echo(f"mailpulse: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    try:
        answer = destination.send(delivery)
    finally:
        destination.close()
    _report(answer)


def _open(config: Config) -> Outbox | None:
    """The outbox, or None when nothing was ever spooled (opening would create the files)."""
    from ingest.spool.outbox import open_outbox

    if not (config.spool_dir / "spool.sqlite").exists():
        return None
    # The outbox logs a storage failure for the server's log; here the failure itself becomes
    # the one line main() prints, so the log record would only say it twice.
    logging.getLogger("ingest.spool").addHandler(logging.NullHandler())
    return open_outbox(config)


def _select(
    outbox: Outbox, *, failed: bool, dead: bool, every: bool, limit: int
) -> list[OutboxRow]:
    """The rows ``list`` shows, newest first, at most ``limit``."""
    from ingest.spool.outbox import STATES

    if every:
        return outbox.rows(STATES, limit)
    if not (failed or dead):
        return outbox.rows(OPEN_STATES, limit)
    states = [*(["pending"] if failed else []), *(["dead"] if dead else [])]
    # "Failing" is a pending row attempted before; the outbox filters by state only, so read
    # on (twice as far each time) until enough of them are found or the rows run out.
    batch = limit
    while True:
        rows = outbox.rows(states, batch)
        chosen = [row for row in rows if row.state == "dead" or row.attempts > 0]
        if len(chosen) >= limit or len(rows) < batch:
            return chosen[:limit]
        batch *= 2


def _not_dead(outbox: Outbox, ids: list[int]) -> list[str]:
    """One sentence per id in ``ids`` that is not a dead-lettered action."""
    from ingest.spool.outbox import STATES

    dead_total = sum(counts.dead for counts in outbox.summary().values())
    dead = {row.id for row in outbox.rows(["dead"], dead_total)} if dead_total else set()
    others = [row_id for row_id in ids if row_id not in dead]
    if not others:
        return []
    # Ids only grow: every row from the oldest id asked about on is among the newest
    # (newest id - that id + 1) rows. Only a mistaken id costs this read.
    newest = outbox.rows(STATES, 1)
    span = newest[0].id - min(others) + 1 if newest else 0
    states = {row.id: row.state for row in outbox.rows(STATES, span)} if span > 0 else {}
    return [
        f"action {row_id} is not dead-lettered (it is {states[row_id]})"
        if row_id in states
        else f"no action {row_id}"
        for row_id in others
        if states.get(row_id) != "dead"  # dead-lettered since the count: fine after all
    ]


def _warn_unconfigured(outbox: Outbox, config: Config) -> None:
    """Say which pending actions no dispatcher will send: their action is not configured."""
    for name, counts in sorted(outbox.summary().items()):
        if counts.pending and name not in config.actions:
            click.echo(
                f"mailpulse: warning: {counts.pending} pending actions of {name} wait until "
                f"[actions.{name}] is configured again",
                err=True,
            )


def _fail(lines: Iterable[str]) -> None:
    """Print each line as an error and exit 1; nothing when there is none."""
    shown = list(lines)
    for line in shown:
        click.echo(f"mailpulse: {line}", err=True)
    if shown:
        sys.exit(EXIT_FAILURE)


def _frame(rows: list[OutboxRow], *, short: bool) -> pl.DataFrame:
    """The rows as ``list`` prints them; ``next_attempt`` only for pending ones, the last
    answer on one short line with ``short`` (a table)."""
    return pl.DataFrame(
        [
            {
                "id": row.id,
                "action": row.action,
                "state": row.state,
                "attempts": row.attempts,
                "event_id": row.event_id,
                "webhook_id": row.webhook_id,
                "created": _iso(row.created_at),
                "next_attempt": _iso(row.next_at) if row.state == "pending" else None,
                "last_status": row.last_status,
                "last_detail": _shorten(row.last_detail) if short else row.last_detail,
            }
            for row in rows
        ],
        schema=_COLUMNS,
        orient="row",
    )


def _print_nothing(fmt: str, sentence: str) -> None:
    """An empty list: ``[]`` for machines, a sentence for people."""
    click.echo("[]" if fmt == "json" else sentence)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shorten(text: str | None) -> str | None:
    """One line of at most ``DETAIL_CHARS`` characters (answers are often multi-line JSON)."""
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_CHARS else flat[: DETAIL_CHARS - 1] + "…"


def _kind(do: str, provider: object) -> str:
    return f"{do} to {provider}" if do == "suppress" else do


def _report(answer: Answer) -> None:
    """``ok: <status> <detail>`` (exit 0) or ``failed: <status> <detail>`` (exit 1)."""
    detail = " ".join(answer.detail.split())
    if len(detail) > ANSWER_CHARS:
        detail = detail[: ANSWER_CHARS - 1] + "…"
    if answer.ok:
        click.echo(f"ok: {answer.status} {detail}".rstrip())
        return
    status = answer.status if answer.status is not None else "no answer"
    click.echo(f"failed: {status} {detail}".rstrip(), err=True)
    sys.exit(EXIT_FAILURE)
