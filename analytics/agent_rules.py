"""Contextual agent rules, applied per message when metrics are computed.

Per-event rules (ESP flags first, then user agent and network) run when events are written
(by the flusher). These rules need the rest of the message, so they run at read time
and therefore always apply to the whole history:

* a click less than ``SCANNER_CLICK_SECONDS`` after delivery is a security scanner's
  (link-checking gateways fetch every link on arrival);
* ``BURST_CLICKS`` or more clicks within ``BURST_SECONDS`` are a scanner clicking every link.
"""

from __future__ import annotations

from mailpulse.lake import AGENT_RULES_VERSION as RULES_VERSION

__all__ = ["BURST_CLICKS", "BURST_SECONDS", "RULES_VERSION", "SCANNER_CLICK_SECONDS"]
SCANNER_CLICK_SECONDS = 10
BURST_CLICKS = 3
BURST_SECONDS = 5


def sql_parameters() -> dict[str, int]:
    """The rule constants as placeholders of ``sql/messages.sql``."""
    return {
        "scanner_click_seconds": SCANNER_CLICK_SECONDS,
        "burst_clicks": BURST_CLICKS,
        "burst_seconds": BURST_SECONDS,
    }
