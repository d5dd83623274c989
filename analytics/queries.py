"""SQL assembly: the per-message table, then the registry's metrics per dimension value.

All SQL text lives in ``analytics/sql/``; this module only fills in the vetted dimension
expression and the registry's metric expressions. Values (dates, campaign) are always bound
parameters, never formatted into the text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib import resources

from analytics import agent_rules
from analytics.errors import BadQuery
from analytics.mailbox import mailbox_provider_sql
from analytics.metrics import METRICS, REGISTRY

PERIODS = ("day", "week", "month")

#: Dimensions a report can be grouped by, as SQL over the per-message table.
DIMENSIONS: dict[str, str] = {
    "campaign": "campaign",
    "date": "CAST(date_trunc('{period}', sent_at) AS DATE)",
    "domain": "recipient_domain",
    "mailbox_provider": mailbox_provider_sql(),
    "provider": "provider",
    "source": "source",
}


@cache
def sql_file(name: str) -> str:
    """The text of ``analytics/sql/<name>``."""
    return resources.files("analytics").joinpath("sql", name).read_text(encoding="utf-8")


def state_sql(events: str = "events") -> str:
    """The mergeable per-message state over a relation of events."""
    return sql_file("message_state.sql").format(events=events)


def address_state_sql(events: str = "events") -> str:
    """The suppression engine's mergeable state over a relation of events."""
    return sql_file("address_state.sql").format(events=events)


def merge_sql(states: str) -> str:
    """Per-message states of one relation merged into one row per message."""
    return sql_file("message_state_merge.sql").format(states=states)


def messages_sql(state: str | None = None) -> str:
    """One row per message with its outcome flags (parameters: since, until, campaign).

    ``state`` is a relation of per-message states; by default the state of the ``events`` view.
    """
    source = state or f"({state_sql()})"
    return sql_file("messages.sql").format(state=source, **agent_rules.sql_parameters())


def metric_names(names: Sequence[str] | None) -> list[str]:
    """Validate metric names (all of them when None), in registry order."""
    if names is None:
        return [metric.name for metric in REGISTRY]
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise BadQuery(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
    return list(names)


def metrics_sql(
    by: str | Sequence[str] | None,
    metrics: Sequence[str] | None = None,
    period: str = "day",
    state: str | None = None,
) -> str:
    """Metrics per value of ``by`` (or one overall row when ``by`` is None).

    ``by`` may name several dimensions, e.g. ``("date", "provider")`` for a rate over time
    per provider: one row per combination that has messages.
    """
    dimensions, grouping = _grouping(by, period)
    columns = ",\n    ".join(f"{METRICS[name].sql()} AS {name}" for name in metric_names(metrics))
    return (
        f"WITH messages AS (\n{messages_sql(state)}\n)\n"
        f"SELECT\n    {dimensions}{columns}\nFROM messages\n{grouping}"
    )


def totals_sql(messages: str, sign: str = "") -> str:
    """Every metric's numerator and denominator summed per day and dimension values, over a
    relation of messages (``messages.sql``); ``sign`` '-' negates them."""
    columns = []
    for metric in REGISTRY:
        parts = {"numerator": metric.numerator_sql, "denominator": metric.denominator_sql}
        columns += [
            f"CAST({sign}({sql}) AS BIGINT) AS {metric.name}__{part}"
            for part, sql in parts.items()
            if sql is not None
        ]
    return sql_file("message_totals.sql").format(
        sign=sign, columns=",\n    ".join(columns), messages=messages
    )


def totals_metrics_sql(
    by: str | Sequence[str] | None,
    metrics: Sequence[str] | None,
    period: str,
    totals: str,
) -> str:
    """:func:`metrics_sql`'s result added up from a relation of totals (:func:`totals_sql`)."""
    dimensions, grouping = _grouping(by, period)
    columns = []
    for name in metric_names(metrics):
        metric = METRICS[name]
        denominator = f"sum({name}__denominator)" if metric.denominator_sql else None
        columns.append(f"{metric.combine(f'sum({name}__numerator)', denominator)} AS {name}")
    if dimensions:  # a group whose messages all moved to another (a newer event) is empty
        grouping = grouping.replace("\nORDER BY", "\nHAVING sum(messages) > 0\nORDER BY")
    select = dimensions + ",\n    ".join(columns)
    return sql_file("totals_metrics.sql").format(totals=totals, select=select, grouping=grouping)


def totals_definition() -> str:
    """A fingerprint of what the totals count (the registry's SQL, ``messages.sql`` and the
    agent rules' constants): totals built otherwise are not read."""
    text = totals_sql(messages_sql("{state}"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _grouping(by: str | Sequence[str] | None, period: str) -> tuple[str, str]:
    """The dimension columns of a metrics query (with a trailing comma) and its GROUP BY and
    ORDER BY clauses; both empty for one overall row."""
    names = [by] if isinstance(by, str) else list(by or ())
    for name in names:
        if name not in DIMENSIONS:
            raise BadQuery(f"cannot group by {name!r}; choose one of {', '.join(DIMENSIONS)}")
    if period not in PERIODS:
        raise BadQuery(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    if not names:
        return "", ""
    dimensions = "".join(
        f"{DIMENSIONS[name].format(period=period)} AS {name},\n    " for name in names
    )
    positions = range(1, len(names) + 1)
    group = ", ".join(str(n) for n in positions)
    order = ", ".join(f"{n} NULLS LAST" for n in positions)
    return dimensions, f"GROUP BY {group}\nORDER BY {order}"


def timing_sql(by: str | None, period: str = "day", state: str | None = None) -> str:
    """Median and 90th percentile seconds from send to delivery, first open, first click."""
    spans = {
        "to_delivery": "first_delivered_at - sent_at",
        "to_first_open": "first_human_open_at - first_delivered_at",
        "to_first_click": "first_human_click_at - first_delivered_at",
    }
    columns = []
    for name, span in spans.items():
        seconds = f"epoch({span})"
        columns += [
            f"median({seconds}) AS median_seconds_{name}",
            f"quantile_cont({seconds}, 0.9) AS p90_seconds_{name}",
        ]
    select = ",\n    ".join(columns)
    messages = f"WITH messages AS (\n{messages_sql(state)}\n)\n"
    if by is None:
        return f"{messages}SELECT\n    {select}\nFROM messages WHERE is_delivered"
    dimension = DIMENSIONS[by].format(period=period)
    return (
        f"{messages}SELECT\n    {dimension} AS {by},\n    {select}\n"
        "FROM messages WHERE is_delivered\nGROUP BY 1\nORDER BY 1 NULLS LAST"
    )
