"""The timestamp checks signed webhooks share: a unix-seconds header, and its freshness.

Every ESP that signs a timestamp asks the same two questions before trusting a request: is
the value unix seconds at all (``bad_timestamp``), and is it inside the window around our
clock that the ESP's retries and clock skew need (``stale_timestamp``)? Each provider states
its own window; the wording of the refusal is the same for all.
"""

from __future__ import annotations

from ingest.errors import AuthenticationFailed

#: Digits of a unix time in seconds (12 reaches the year 33658) or milliseconds (13).
MAX_DIGITS = 13
_MILLIS_THRESHOLD = 100_000_000_000  # larger values can only be milliseconds


def unix_seconds(text: str, *, field: str, allow_millis: bool = False) -> int:
    """``text`` read as unix seconds; ``bad_timestamp`` unless it is plain ASCII digits.

    With ``allow_millis``, a 13-digit value is taken as milliseconds (SendGrid's SDKs send
    either) and returned in seconds.
    """
    digits = MAX_DIGITS if allow_millis else MAX_DIGITS - 1
    if not text.isascii() or not text.isdigit() or len(text) > digits:
        raise AuthenticationFailed(f"{field} must be unix seconds", code="bad_timestamp")
    value = int(text)
    return value // 1000 if allow_millis and value > _MILLIS_THRESHOLD else value


def require_fresh(
    sent: float, now: float, *, field: str, back: float, ahead: float | None = None
) -> None:
    """``stale_timestamp`` unless ``sent`` is at most ``back`` s before ``now`` and ``ahead``
    s after it (``ahead`` defaults to ``back``: a symmetric window)."""
    ahead = back if ahead is None else ahead
    if now - sent > back or sent - now > ahead:
        window = (
            f"more than {back:g} s from our clock"
            if ahead == back
            else f"outside the accepted window ({back:g} s back, {ahead:g} s ahead)"
        )
        raise AuthenticationFailed(f"{field} is {window}", code="stale_timestamp")
