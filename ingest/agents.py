"""Who opened or clicked: a person, a privacy proxy, a security scanner or a bot.

ESP flags come first (a provider's ``normalize`` sets ``agent`` when the ESP says so); these
rules fill in the rest from the user agent. ``RULES_VERSION`` is stored with each decision's
reason so history can be re-classified when the rules change.
"""

from __future__ import annotations

import re

RULES_VERSION = 1

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


def classify(event_type: str, user_agent: str | None) -> tuple[str, str]:
    """``(agent, reason)`` for an open or click the ESP did not flag."""
    if not user_agent:
        return "unknown", f"rules v{RULES_VERSION}: no user agent"
    if _GMAIL_PROXY.search(user_agent):
        return "gmail_proxy", f"rules v{RULES_VERSION}: Google image proxy user agent"
    if event_type == "opened" and _APPLE_MPP.match(user_agent.strip()):
        return "apple_mpp", f"rules v{RULES_VERSION}: Apple Mail Privacy Protection user agent"
    if _SCANNER.search(user_agent):
        return "scanner", f"rules v{RULES_VERSION}: security scanner user agent"
    if _BOT.search(user_agent):
        return "bot", f"rules v{RULES_VERSION}: automated client user agent"
    return "human", f"rules v{RULES_VERSION}: browser or mail client user agent"
