"""The metric registry on other SQL engines: views translated from the one definition.

DuckDB runs the per-message SQL (``sql/message_state.sql``, ``sql/messages.sql``) and the
registry's metric expressions (:meth:`Metric.sql`) directly. For Spark, Trino, BigQuery and
Snowflake the very same text is translated by sqlglot, never re-typed, into a script of views:

* ``events``: the lake, as each engine reads Hive-partitioned Parquet (:mod:`analytics.engines`);
* ``messages``: one row per message, ``sql/messages.sql`` without the report's filters;
* ``metrics_by_<dimension>``: every registry metric per value of each ``report --by``
  dimension (``date`` is the UTC day), columns named as in ``report --format json``;
* ``metrics_total``: every metric over all messages.

sqlglot translates what it knows, and copies what it does not know through unchanged, which
the engine then refuses; some of what it knows it writes with functions an engine lacks
(DuckDB's ``median`` becomes ``PERCENTILE_CONT`` in Trino, which has none). So the SQL may use
only the functions in :data:`CHECKED`, whose translation to every engine here was checked
(run by DuckDB and Spark in the tests, read against the Trino, BigQuery and Snowflake
documentation); anything else stops the translation with an error naming the metric or view.
The one DuckDB function that sqlglot does not map everywhere, ``epoch_us``, is written here
for each engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from importlib.metadata import version

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.optimizer.simplify import simplify

from analytics.engines import DIALECTS, events_statement, session_statements
from analytics.errors import BadQuery
from analytics.metrics import REGISTRY, Metric
from analytics.queries import DIMENSIONS, messages_sql, metrics_sql

__all__ = [
    "CHECKED",
    "DIALECTS",
    "UntranslatableSQL",
    "View",
    "script",
    "statements",
    "translate_metric",
]


class UntranslatableSQL(BadQuery):
    """A metric or view uses SQL that cannot be written in an engine's dialect."""


@dataclass(frozen=True)
class View:
    """One view of the script: its name, what it holds, and its query in DuckDB's SQL."""

    name: str
    about: str
    query: exp.Expr


_TS = "__ts"  # the argument's stand-in in the templates below
# Microseconds since the epoch of a timestamp (DuckDB's epoch_us), per dialect.
_EPOCH_US = {
    "duckdb": f"EPOCH_US({_TS})",
    "spark": f"UNIX_MICROS({_TS})",
    "bigquery": f"UNIX_MICROS({_TS})",
    # to_unixtime is a double of seconds: until 2106 (2^32 s) it is within a quarter of a
    # microsecond of the instant, so rounding gives the microseconds back exactly.
    "trino": f"CAST(ROUND(TO_UNIXTIME(WITH_TIMEZONE({_TS}, 'UTC')) * 1000000) AS BIGINT)",
    "snowflake": f"DATE_PART(EPOCH_MICROSECOND, {_TS})",
}
#: DuckDB functions sqlglot reads as unknown, and how each dialect writes them.
_FUNCTIONS: dict[str, dict[str, str]] = {"epoch_us": _EPOCH_US}
#: The functions (sqlglot's kinds) the views and metrics may use: those whose translation to
#: every dialect was checked. Add one only after checking it in each engine.
CHECKED: tuple[type[exp.Func], ...] = (
    exp.And,
    exp.Or,
    exp.Case,
    exp.If,
    exp.Cast,
    exp.Coalesce,
    exp.Count,
    exp.CountIf,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.LogicalOr,  # bool_or
    exp.ArgMax,  # arg_max, max_by: rows whose key is NULL are skipped everywhere
    exp.TimestampTrunc,  # date_trunc, with the unit 'day' only (BigQuery's weeks start Sunday)
)


def views() -> list[View]:
    """The views over ``events``, in DuckDB's SQL: ``messages``, then the metrics views."""
    messages = _without_filters(_parse(messages_sql(), "view messages"))
    found = [View("messages", "one row per message (analytics/sql/messages.sql)", messages)]
    for by in DIMENSIONS:
        about = f"every registry metric per {by}" + (" (UTC day)" if by == "date" else "")
        query = _over_messages_view(_parse(metrics_sql(by), f"view metrics_by_{by}"))
        found.append(View(f"metrics_by_{by}", about, query))
    total = _over_messages_view(_parse(metrics_sql(None), "view metrics_total"))
    found.append(View("metrics_total", "every registry metric over all messages", total))
    return found


def translate_metric(metric: Metric, dialect: str) -> str:
    """``metric``'s expression in ``dialect``, as a query over the ``messages`` view.

    Raises:
        UntranslatableSQL: the metric's SQL cannot be written in ``dialect``.
    """
    what = f"metric {metric.name!r}"
    query = _parse(f"SELECT {metric.sql()} AS {metric.name} FROM messages", what)
    return _translate(query, dialect, what)


def statements(dialect: str, lake: str) -> list[str]:
    """Every statement of the script for ``dialect`` over the lake at ``lake``, in order.

    Raises:
        BadQuery: an unknown dialect, or a lake location the engine cannot read.
        UntranslatableSQL: a metric or view cannot be written in ``dialect``.
    """
    found = [*session_statements(dialect), events_statement(dialect, lake)]
    for metric in REGISTRY:  # first each metric alone, so that an error names it
        translate_metric(metric, dialect)
    create = "CREATE OR REPLACE TEMPORARY VIEW" if dialect == "spark" else "CREATE OR REPLACE VIEW"
    for view in views():
        body = _translate(view.query, dialect, f"view {view.name}")
        found.append(f"-- {view.name}: {view.about}\n{create} {view.name} AS\n{body}")
    return found


def script(dialect: str, lake: str) -> str:
    """The whole script: a header, then :func:`statements`, each ending with ``;``."""
    header = (
        f"-- mailpulse: the events, messages and metrics views for {DIALECTS.get(dialect)},\n"
        f"-- translated by sqlglot {version('sqlglot')} from analytics/sql/*.sql and the "
        "metric registry\n-- (docs/metrics.md). Regenerate with: mailpulse sql --dialect "
        f"{dialect} --lake {lake}\n\n"
    )
    return header + "".join(f"{statement};\n\n" for statement in statements(dialect, lake))


def _parse(sql: str, what: str) -> exp.Expr:
    try:
        return sqlglot.parse_one(sql, read="duckdb")
    except SqlglotError as error:
        raise UntranslatableSQL(f"{what}: sqlglot cannot read its SQL ({_first(error)})") from None


def _without_filters(query: exp.Expr) -> exp.Expr:
    """The query with its report parameters (``$since``, ...) unset: the views hold everything,
    and whoever queries them filters. The WHERE that is left is simplified away."""
    query = query.transform(lambda node: exp.Null() if isinstance(node, exp.Placeholder) else node)
    where = query.args.get("where")
    if where is not None:
        condition = simplify(where.this)
        if condition == exp.true():
            query.set("where", None)
        else:
            where.set("this", condition)
    return query


def _over_messages_view(query: exp.Expr) -> exp.Expr:
    """A metrics query of :func:`analytics.queries.metrics_sql` reading the ``messages`` view
    instead of defining its own ``messages``, and without ORDER BY (views have no order)."""
    ctes = query.find(exp.With)
    assert ctes is not None and [cte.alias for cte in ctes.expressions] == ["messages"]
    ctes.pop()
    query.set("order", None)
    return query


def _translate(query: exp.Expr, dialect: str, what: str) -> str:
    """``query`` (DuckDB's SQL) written in ``dialect``."""
    if dialect not in DIALECTS:
        raise BadQuery(f"unknown dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    unchecked = sorted(
        {
            node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            for node in query.find_all(exp.Func)
            if not isinstance(node, CHECKED)
            and not (isinstance(node, exp.Anonymous) and node.name.lower() in _FUNCTIONS)
        }
    )
    if unchecked:
        raise UntranslatableSQL(
            f"{what} uses {', '.join(unchecked)}, whose translation to {dialect} and the other "
            "engines is not known to work: write it with the functions the other metrics use, "
            "or check it in every engine and add it to analytics/dialects.py CHECKED"
        )
    try:
        portable = query.copy().transform(partial(_rewrite, dialect=dialect))
        return portable.sql(
            dialect=dialect, pretty=True, unsupported_level=ErrorLevel.RAISE, comments=False
        )
    except SqlglotError as error:
        raise UntranslatableSQL(f"{what} cannot be written in {dialect}: {_first(error)}") from None


def _rewrite(node: exp.Expr, dialect: str) -> exp.Expr:
    """Write the functions sqlglot does not know (:data:`_FUNCTIONS`) in ``dialect``."""
    if isinstance(node, exp.Anonymous) and node.name.lower() in _FUNCTIONS:
        return _fill(_FUNCTIONS[node.name.lower()][dialect], dialect, *node.expressions)
    return node


def _fill(template: str, dialect: str, argument: exp.Expr) -> exp.Expr:
    def stand_in(node: exp.Expr) -> exp.Expr:
        return argument.copy() if isinstance(node, exp.Column) and node.name == _TS else node

    return sqlglot.parse_one(template, read=dialect).transform(stand_in)


def _first(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
