"""Who opened or clicked: a person, a privacy proxy, a security scanner or a bot.

ESP flags come first (a provider's ``normalize`` sets ``agent`` when the ESP says so; its
reason starts with ``esp``). These rules fill in the rest from the user agent and the client
network when events are written; rules that need the rest of the message (clicks seconds
after delivery, click bursts) run when metrics are read (:mod:`analytics.agent_rules`).
``RULES_VERSION`` is written into each decision's reason, and ``mailpulse reclassify``
re-runs these rules over the whole lake when they change.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from mailpulse.lake import AGENT_RULES_VERSION as RULES_VERSION

_GMAIL_PROXY = re.compile(r"GoogleImageProxy|ggpht\.com", re.IGNORECASE)
_SCANNER = re.compile(
    r"Barracuda|Mimecast|Proofpoint|Forcepoint|Symantec|Trend ?Micro|Sophos|SafeLinks|"
    r"Microsoft Office Protection|Cisco|FireEye|Zscaler",
    re.IGNORECASE,
)
_BOT = re.compile(
    r"bot\b|spider|crawler|curl/|wget/|python-requests|httpclient|headless", re.IGNORECASE
)
# Apple Mail Privacy Protection fetches with a bare "Mozilla/5.0" and nothing after it.
_APPLE_MPP = re.compile(r"^Mozilla/5\.0$")
# Apple's proxies fetch from Apple's own network; Google's image proxy from Google's.
_APPLE_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)
_GOOGLE_PROXY_NETWORKS = (
    ipaddress.ip_network("66.102.0.0/20"),
    ipaddress.ip_network("66.249.80.0/20"),
)


@lru_cache(maxsize=65_536)  # the flusher asks once per open and click; most repeat
def classify(event_type: str, user_agent: str | None, ip: str | None = None) -> tuple[str, str]:
    """``(agent, reason)`` for an open or click the ESP did not flag."""
    version = f"rules v{RULES_VERSION}"
    if user_agent and _GMAIL_PROXY.search(user_agent):
        return "gmail_proxy", f"{version}: Google image proxy user agent"
    network = _network(ip) if event_type == "opened" and ip else None
    if network == "apple":
        return "apple_mpp", f"{version}: open from Apple's network"
    if network == "google":
        return "gmail_proxy", f"{version}: open from Google's image proxy network"
    return _by_user_agent(event_type, user_agent)


@lru_cache(maxsize=65_536)  # user agents repeat: a handful of clients send most events
def _by_user_agent(event_type: str, user_agent: str | None) -> tuple[str, str]:
    version = f"rules v{RULES_VERSION}"
    if not user_agent:
        return "unknown", f"{version}: no user agent"
    if event_type == "opened" and _APPLE_MPP.match(user_agent.strip()):
        return "apple_mpp", f"{version}: Apple Mail Privacy Protection user agent"
    if _SCANNER.search(user_agent):
        return "scanner", f"{version}: security scanner user agent"
    if _BOT.search(user_agent):
        return "bot", f"{version}: automated client user agent"
    return "human", f"{version}: browser or mail client user agent"


def is_rule_decision(reason: str | None) -> bool:
    """True when an agent came from these rules (and may be re-run), not from the ESP."""
    return reason is None or reason.startswith("rules v")


@lru_cache(maxsize=65_536)
def _network(ip: str) -> str | None:
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if any(address in net for net in _APPLE_NETWORKS):
        return "apple"
    if any(address in net for net in _GOOGLE_PROXY_NETWORKS):
        return "google"
    return None
