"""The metric registry: every number mailpulse reports, defined once.

Each :class:`Metric` names its numerator and denominator in words and in SQL over the
per-message table of ``analytics/sql/messages.sql`` (one row per message to one recipient).
The CLI, the dashboard and the notebooks all compute metrics from this list, and
``docs/metrics.md`` is generated from it (``python -m analytics.docs``).

Conventions that hold for every metric here:

* The unit is the message to one recipient. A message belongs to the date of its first event.
* Unique open and click metrics count **human** activity only (``agent = 'human'``); what
  privacy proxies, scanners and bots did is reported beside them, never mixed in.
* A click does not imply an open: the open rate is what the pixel saw from people.
* Rates are ``None`` when their denominator is zero, and always lie in [0, 1].
* Numerators and denominators are sums over messages (``count_if``, ``sum`` and sums of
  them), so they add up over any split of the messages: the rollup keeps them summed per day
  (``analytics/totals.py``), and a test holds every metric to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HUMAN = ("human",)
MACHINE = ("apple_mpp", "gmail_proxy", "scanner", "bot")

Kind = Literal["count", "rate"]


@dataclass(frozen=True)
class Metric:
    """One metric: what it counts, over what, and the SQL that says so."""

    name: str
    kind: Kind
    description: str
    numerator: str  # in words
    numerator_sql: str  # an aggregate over the per-message table
    denominator: str | None = None
    denominator_sql: str | None = None
    grain: Literal["message", "event"] = "message"
    agents: tuple[str, ...] | None = None  # which ``agent`` values count, where it matters
    headline: bool = False  # shown in the default table

    @property
    def additive(self) -> bool:
        """Counts add up over disjoint date ranges (messages belong to one date); rates do not."""
        return self.kind == "count"

    def sql(self) -> str:
        """The SQL expression of this metric in the aggregate query."""
        return self.combine(self.numerator_sql, self.denominator_sql)

    def combine(self, numerator: str, denominator: str | None) -> str:
        """The metric from SQL for its numerator and denominator: the registry's own
        aggregates (:meth:`sql`), or sums of them kept by the rollup's totals."""
        if self.kind == "count":
            return f"CAST(coalesce({numerator}, 0) AS BIGINT)"
        assert denominator is not None
        return f"CASE WHEN ({denominator}) > 0 THEN ({numerator})::DOUBLE / ({denominator}) END"


_OUTCOMES = "count_if(is_delivered) + count_if(is_bounced)"
_DELIVERED = "count_if(is_delivered)"

REGISTRY: tuple[Metric, ...] = (
    Metric(
        "sent",
        "count",
        "Messages the ESP accepted for delivery.",
        "messages with a sent, delivered, deferred or bounced event",
        "count_if(was_sent)",
        headline=True,
    ),
    Metric(
        "delivered",
        "count",
        "Messages whose last outcome is a delivery.",
        "messages with a delivered event and no later bounce",
        _DELIVERED,
        headline=True,
    ),
    Metric(
        "bounced",
        "count",
        "Messages whose last outcome is a bounce.",
        "messages with a bounced event and no later delivery",
        "count_if(is_bounced)",
        headline=True,
    ),
    Metric(
        "hard_bounced",
        "count",
        "Bounced messages whose last bounce was permanent.",
        "bounced messages whose last bounce is hard",
        "count_if(is_bounced AND bounce_class = 'hard')",
    ),
    Metric(
        "soft_bounced",
        "count",
        "Bounced messages whose last bounce was temporary.",
        "bounced messages whose last bounce is soft",
        "count_if(is_bounced AND bounce_class = 'soft')",
    ),
    Metric(
        "dropped",
        "count",
        "Messages the ESP never attempted.",
        "messages with a dropped event and no sent, delivered, deferred or bounced event",
        "count_if(is_dropped)",
    ),
    Metric(
        "deferred",
        "count",
        "Messages delayed at least once (whatever happened next).",
        "messages with a deferred event",
        "count_if(was_deferred)",
    ),
    Metric(
        "delivery_rate",
        "rate",
        "Share of delivery outcomes that were deliveries.",
        "delivered",
        _DELIVERED,
        "delivered + bounced",
        _OUTCOMES,
    ),
    Metric(
        "bounce_rate",
        "rate",
        "Share of delivery outcomes that were bounces.",
        "bounced",
        "count_if(is_bounced)",
        "delivered + bounced",
        _OUTCOMES,
        headline=True,
    ),
    Metric(
        "hard_bounce_rate",
        "rate",
        "Share of delivery outcomes that were hard bounces.",
        "hard_bounced",
        "count_if(is_bounced AND bounce_class = 'hard')",
        "delivered + bounced",
        _OUTCOMES,
    ),
    Metric(
        "unique_opens",
        "count",
        "Delivered messages a person opened.",
        "delivered messages with a human open",
        "count_if(is_delivered AND human_opened)",
        agents=HUMAN,
    ),
    Metric(
        "unique_open_rate",
        "rate",
        "Share of delivered messages a person opened.",
        "unique_opens",
        "count_if(is_delivered AND human_opened)",
        "delivered",
        _DELIVERED,
        agents=HUMAN,
        headline=True,
    ),
    Metric(
        "machine_opens",
        "count",
        "Delivered messages opened only by machines (privacy proxies, scanners, bots).",
        "delivered messages with a machine open and no human open",
        "count_if(is_delivered AND machine_opened AND NOT human_opened)",
        agents=MACHINE,
    ),
    Metric(
        "machine_open_share",
        "rate",
        "Share of all open events made by machines.",
        "open events by apple_mpp, gmail_proxy, scanner or bot",
        "sum(machine_open_events)",
        "all open events",
        "sum(open_events)",
        grain="event",
        agents=MACHINE,
    ),
    Metric(
        "total_opens",
        "count",
        "Every open event, people and machines, as ESPs count them.",
        "open events",
        "sum(open_events)",
        grain="event",
    ),
    Metric(
        "unique_clicks",
        "count",
        "Delivered messages a person clicked.",
        "delivered messages with a human click (not a scanner's)",
        "count_if(is_delivered AND human_clicked)",
        agents=HUMAN,
    ),
    Metric(
        "unique_click_rate",
        "rate",
        "Share of delivered messages a person clicked.",
        "unique_clicks",
        "count_if(is_delivered AND human_clicked)",
        "delivered",
        _DELIVERED,
        agents=HUMAN,
        headline=True,
    ),
    Metric(
        "total_clicks",
        "count",
        "Every click event, people and machines.",
        "click events",
        "sum(click_events)",
        grain="event",
    ),
    Metric(
        "click_to_open_rate",
        "rate",
        "Share of people-opened messages a person clicked.",
        "delivered messages with a human open and a human click",
        "count_if(is_delivered AND human_opened AND human_clicked)",
        "unique_opens",
        "count_if(is_delivered AND human_opened)",
        agents=HUMAN,
    ),
    Metric(
        "complaints",
        "count",
        "Messages reported as spam.",
        "messages with a complained event",
        "count_if(complained)",
        headline=False,
    ),
    Metric(
        "complaint_rate",
        "rate",
        "Share of delivered messages reported as spam.",
        "delivered messages with a complaint",
        "count_if(is_delivered AND complained)",
        "delivered",
        _DELIVERED,
        headline=True,
    ),
    Metric(
        "unsubscribes",
        "count",
        "Messages whose recipient unsubscribed (and did not resubscribe).",
        "messages with an unsubscribe not followed by a resubscribe",
        "count_if(is_unsubscribed)",
    ),
    Metric(
        "unsubscribe_rate",
        "rate",
        "Share of delivered messages that led to an unsubscribe.",
        "delivered messages with an unsubscribe",
        "count_if(is_delivered AND is_unsubscribed)",
        "delivered",
        _DELIVERED,
    ),
)

METRICS: dict[str, Metric] = {metric.name: metric for metric in REGISTRY}
HEADLINE: tuple[str, ...] = tuple(m.name for m in REGISTRY if m.headline)
