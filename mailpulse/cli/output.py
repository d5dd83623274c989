"""Printing frames: a readable table on a terminal, CSV or JSON for machines."""

from __future__ import annotations

import sys
from datetime import date, datetime
from typing import Any

import click
import orjson
import polars as pl

_RATE_SUFFIX = "_rate"


def print_frame(
    frame: pl.DataFrame, fmt: str, *, title: str = "", whole: tuple[str, ...] = ()
) -> None:
    """Write ``frame`` to stdout as ``table``, ``csv`` or ``json`` (an array of objects).

    In a table the ``whole`` columns (ids a reader copies) are never wrapped or cut: the
    other columns wrap, and when that is not enough the table is wider than the terminal.
    """
    if fmt == "csv":
        sys.stdout.write(frame.write_csv())
    elif fmt == "json":
        rows = frame.to_dicts()
        sys.stdout.write(orjson.dumps(rows, default=_json_default).decode() + "\n")
    else:
        _table(frame, title, whole)


def _table(frame: pl.DataFrame, title: str, whole: tuple[str, ...]) -> None:
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    if frame.is_empty():
        click.echo("no data yet: point an ESP at /webhooks/<source>, then run `mailpulse flush`")
        return
    table = Table(title=title or None)
    rows = [
        [_cell(name, value) for name, value in row.items()] for row in frame.iter_rows(named=True)
    ]
    for index, (name, dtype) in enumerate(frame.schema.items()):
        widest = max([len(name), *(len(row[index]) for row in rows)])
        table.add_column(
            name,
            justify="right" if dtype.is_numeric() else "left",
            no_wrap=name in whole,
            min_width=widest if name in whole else None,
        )
    for row in rows:
        table.add_row(*row)
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    needed = Measurement.get(console, console.options, table).minimum
    if needed > console.width:
        console = Console(soft_wrap=True, width=needed)
    console.print(table)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-" if name.endswith(_RATE_SUFFIX) else "(none)"
    if name.endswith(_RATE_SUFFIX) and isinstance(value, float):
        return f"{value:.1%}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")
