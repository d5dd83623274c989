"""Generate ``docs/metrics.md`` from the registry: ``python -m analytics.docs --write``.

A test compares the committed page with this output, so the page cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

from analytics import agent_rules
from analytics.metrics import REGISTRY, Metric

PAGE = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"

_INTRO = f"""# Metrics

Generated from `analytics/metrics.py` by `python -m analytics.docs --write`; do not edit by
hand. The CLI (`mailpulse report`), the dashboard and the notebooks all compute these
definitions, and nothing else. `mailpulse sql` prints them as views for Spark, Trino, Athena,
BigQuery and Snowflake, translated from the same SQL: [spark.md](spark.md).

## Conventions

- **The unit is the message to one recipient**: `(message_id, recipient)`. Every event of a
  message is folded into one row of the per-message table (`analytics/sql/messages.sql`),
  and every metric counts rows of that table (or, for event-grain metrics, events in it).
- **A message belongs to the UTC date of its first event.** Date filters and `--by date`
  select whole messages, so counts over disjoint date ranges add up.
- **Delivered or bounced is the last outcome**: a bounce followed by a delivery is delivered;
  a delivery followed by a bounce is bounced. So delivery rate + bounce rate = 1.
- **Unique opens and clicks count people only** (`agent = human`). Opens by Apple Mail
  Privacy Protection, Google's image proxy, scanners and bots are reported beside them
  (`machine_opens`, `machine_open_share`), never mixed in. **A click does not imply an
  open**: the open rate is what the pixel saw from people.
- **Scanner clicks** (agent rules v{agent_rules.RULES_VERSION}): a click less than
  {agent_rules.SCANNER_CLICK_SECONDS} s after delivery, or {agent_rules.BURST_CLICKS} or more
  clicks within {agent_rules.BURST_SECONDS} s, do not make a message clicked.
- **Rates are empty (null) when their denominator is zero** and otherwise lie in [0, 1].
- **Numerators and denominators are sums over messages** (`count_if`, `sum`, and sums of
  them), so they add up over any split of the messages: `mailpulse compact` keeps them summed
  per day, campaign, recipient domain, provider and source, and reports add those sums up. A
  new metric must keep to this (a test checks it).
"""


def _row(metric: Metric) -> str:
    denominator = metric.denominator or ""
    agents = ", ".join(metric.agents) if metric.agents else "all"
    additive = "yes" if metric.additive else "no"
    return (
        f"| `{metric.name}` | {metric.kind} | {metric.description} | {metric.numerator} "
        f"| {denominator} | {metric.grain} | {agents} | {additive} |"
    )


def render() -> str:
    """The whole page."""
    header = (
        "| metric | kind | what it says | numerator | denominator | grain | agents counted "
        "| adds up over dates |\n|---|---|---|---|---|---|---|---|"
    )
    table = "\n".join(_row(metric) for metric in REGISTRY)
    sql = "\n".join(f"| `{m.name}` | `{m.sql()}` |" for m in REGISTRY)
    return (
        f"{_INTRO}\n## Definitions\n\n{header}\n{table}\n\n"
        f"## SQL over the per-message table\n\n| metric | expression |\n|---|---|\n{sql}\n"
    )


def main(argv: list[str]) -> int:
    """Print the page, or write it with ``--write``."""
    text = render()
    if "--write" in argv:
        PAGE.parent.mkdir(exist_ok=True)
        PAGE.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
