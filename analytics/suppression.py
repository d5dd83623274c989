"""The suppression engine: which addresses must not be mailed again, and why.

An address is suppressed (DESIGN.md, "Suppression"; each rule can be switched off in
``[suppression]``) after:

* ``hard_bounce``: a hard bounce;
* ``complaint``: a spam complaint;
* ``unsubscribe``: an unsubscribe, until a later resubscribe lifts it;
* ``soft_bounces``: ``soft_bounce_limit`` soft bounces within ``soft_bounce_window_days``
  days with no delivery in between; a later delivery lifts it;
* ``invalid_drop``: the ESP dropped a message because the address is invalid or bounced
  before (``bounce_class`` of the drop is ``invalid`` or ``bounced``).

Every suppression keeps its evidence: the event ids, their times and the reason text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from analytics.lake import Lake
from analytics.queries import sql_file
from mailpulse.config import SuppressionConfig

RULES = ("hard_bounce", "complaint", "unsubscribe", "soft_bounces", "invalid_drop")
INVALID_DROP_CLASSES = frozenset({"invalid", "bounced"})

SCHEMA: dict[str, pl.DataType] = {
    "address": pl.String(),
    "rule": pl.String(),
    "reason": pl.String(),
    "suppressed_at": pl.Datetime("us", "UTC"),
    "event_ids": pl.List(pl.String()),
    "rules": pl.List(pl.String()),
}


@dataclass
class Finding:
    """One rule that holds for an address, with its evidence."""

    rule: str
    since: datetime
    event_ids: list[str]
    reason: str | None


@dataclass
class AddressHistory:
    """Walks one address's events in time order and keeps what each rule concluded."""

    rules: SuppressionConfig
    findings: dict[str, Finding] = field(default_factory=dict)
    lifted: list[str] = field(default_factory=list)  # what lifted a finding, for ``why``
    # soft bounces since the last delivery, inside the window: (time, event id, reason)
    soft_bounces: list[tuple[datetime, str, str | None]] = field(default_factory=list)

    def see(self, event: dict[str, Any]) -> None:
        """Apply one event."""
        kind, at, event_id = event["event_type"], event["occurred_at"], event["event_id"]
        reason = event["reason"]
        if kind == "delivered":
            self.soft_bounces.clear()
            if self.findings.pop("soft_bounces", None) is not None:
                self.lifted.append(f"soft_bounces lifted by delivery {event_id} at {at}")
        elif kind == "bounced" and event["bounce_class"] == "hard":
            self._first("hard_bounce", at, [event_id], reason)
        elif kind == "bounced" and event["bounce_class"] == "soft":
            window = timedelta(days=self.rules.soft_bounce_window_days)
            self.soft_bounces = [s for s in self.soft_bounces if at - s[0] <= window] + [
                (at, event_id, reason)
            ]
            if len(self.soft_bounces) >= self.rules.soft_bounce_limit:
                ids = [s[1] for s in self.soft_bounces]
                self._first("soft_bounces", at, ids, reason)
        elif kind == "complained":
            self._first("complaint", at, [event_id], reason)
        elif kind == "unsubscribed":
            self._first("unsubscribe", at, [event_id], reason)
        elif kind == "resubscribed":
            if self.findings.pop("unsubscribe", None) is not None:
                self.lifted.append(f"unsubscribe lifted by resubscribe {event_id} at {at}")
        elif kind == "dropped" and event["bounce_class"] in INVALID_DROP_CLASSES:
            self._first("invalid_drop", at, [event_id], reason or event["bounce_class"])

    def _first(self, rule: str, at: datetime, ids: list[str], reason: str | None) -> None:
        if getattr(self.rules, _SWITCH[rule]) and rule not in self.findings:
            self.findings[rule] = Finding(rule, at, ids, reason)


_SWITCH = {
    "hard_bounce": "hard_bounce",
    "complaint": "complaint",
    "unsubscribe": "unsubscribe",
    "soft_bounces": "soft_bounce_limit",  # a limit of 0 switches the rule off
    "invalid_drop": "invalid_drop",
}


def histories(
    lake: Lake, rules: SuppressionConfig, address: str | None = None
) -> dict[str, AddressHistory]:
    """Every candidate address's walked history (or one address's)."""
    frame = lake.sql(
        sql_file("suppression_candidates.sql"),
        {"address": address.strip().lower() if address else None},
    )
    walked: dict[str, AddressHistory] = {}
    for event in frame.iter_rows(named=True):
        history = walked.get(event["address"])
        if history is None:
            history = walked[event["address"]] = AddressHistory(rules)
        history.see(event)
    return walked


def suppressions(lake: Lake, rules: SuppressionConfig) -> pl.DataFrame:
    """One row per suppressed address: the earliest rule that holds, its evidence, all rules."""
    rows = []
    for address, history in sorted(histories(lake, rules).items()):
        if not history.findings:
            continue
        first = min(history.findings.values(), key=lambda f: (f.since, RULES.index(f.rule)))
        rows.append(
            {
                "address": address,
                "rule": first.rule,
                "reason": first.reason,
                "suppressed_at": first.since,
                "event_ids": first.event_ids,
                "rules": [
                    f.rule
                    for f in sorted(history.findings.values(), key=lambda f: RULES.index(f.rule))
                ],
            }
        )
    return pl.DataFrame(rows, schema=SCHEMA)


def near_the_soft_bounce_limit(
    lake: Lake, rules: SuppressionConfig, now: datetime | None = None
) -> pl.DataFrame:
    """Addresses one soft bounce away from suppression.

    Only soft bounces still inside the window at ``now`` (default: the current time) count,
    oldest first.
    """
    now = now or datetime.now(tz=UTC)
    window = timedelta(days=rules.soft_bounce_window_days)
    rows = []
    for address, history in sorted(histories(lake, rules).items()):
        if "soft_bounces" in history.findings:
            continue
        recent = [s for s in history.soft_bounces if now - s[0] <= window]
        if recent and len(recent) == rules.soft_bounce_limit - 1:
            rows.append(
                {
                    "address": address,
                    "soft_bounces": len(recent),
                    "last_soft_bounce_at": recent[-1][0],
                    "event_ids": [s[1] for s in recent],
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "address": pl.String(),
            "soft_bounces": pl.Int64(),
            "last_soft_bounce_at": pl.Datetime("us", "UTC"),
            "event_ids": pl.List(pl.String()),
        },
    )


@dataclass(frozen=True)
class Explanation:
    """Why one address is, or is not, suppressed."""

    address: str
    findings: list[Finding]
    lifted: list[str]

    @property
    def suppressed(self) -> bool:
        """True when at least one rule holds."""
        return bool(self.findings)

    def lines(self) -> list[str]:
        """A human explanation, one line per fact."""
        if not self.findings and not self.lifted:
            return [
                f"{self.address} is not suppressed: no bounce, complaint, unsubscribe or "
                "drop is recorded for it"
            ]
        head = (
            f"{self.address} is suppressed"
            if self.findings
            else f"{self.address} is not suppressed"
        )
        out = [head]
        for finding in sorted(self.findings, key=lambda f: f.since):
            reason = f": {finding.reason}" if finding.reason else ""
            out.append(
                f"  {finding.rule} since {finding.since.isoformat()}{reason} "
                f"(events {', '.join(finding.event_ids)})"
            )
        out += [f"  {line}" for line in self.lifted]
        return out


def explain(lake: Lake, rules: SuppressionConfig, address: str) -> Explanation:
    """Every rule that holds for ``address`` with its evidence, and what lifted others."""
    key = address.strip().lower()
    history = histories(lake, rules, key).get(key)
    if history is None:
        return Explanation(key, [], [])
    return Explanation(key, list(history.findings.values()), history.lifted)
