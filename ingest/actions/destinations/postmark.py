"""``do = "suppress"``, ``provider = "postmark"``: the address onto a message stream's list.

``POST /message-streams/{stream}/suppressions`` (stream ``outbound`` unless
``message_stream`` names another). Postmark answers 200 even when it refused an address: the
body lists each address with ``Status`` ``Suppressed`` or ``Failed`` and a ``Message``. A
``Failed`` address is reported as a final failure (422) carrying Postmark's message.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson

from ingest.actions.destinations.base import DETAIL_CHARS, Answer, Delivery
from ingest.actions.destinations.http import NO_RECIPIENT, HttpClient, Reply, recipient_of
from mailpulse.actions_config import ActionConfig

BASE_URL = "https://api.postmarkapp.com"
DEFAULT_STREAM = "outbound"


class PostmarkDestination:
    """Adds each delivery's recipient to the stream's suppression list."""

    def __init__(self, action: ActionConfig) -> None:
        api_key = action.secret("api_key")
        if api_key is None:
            raise ValueError(f"action {action.name}: postmark needs a server token")
        self._token = api_key
        base = str(action.options.get("endpoint_url") or BASE_URL).rstrip("/")
        stream = urllib.parse.quote(
            str(action.options.get("message_stream", DEFAULT_STREAM)), safe=""
        )
        self.url = f"{base}/message-streams/{stream}/suppressions"
        self._http = HttpClient(action)

    def send(self, delivery: Delivery) -> Answer:
        """Suppress the delivery's recipient once."""
        recipient = recipient_of(delivery)
        if recipient is None:
            return NO_RECIPIENT
        headers = {
            "X-Postmark-Server-Token": self._token,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        body = orjson.dumps({"Suppressions": [{"EmailAddress": recipient}]})
        return self._http.post(self.url, headers=headers, data=body, judge=judge)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()


def judge(reply: Reply) -> Answer:
    """The answer for Postmark's reply: a 2xx listing a ``Failed`` address is a 422."""
    answer = reply.answer()
    if not answer.ok:
        return answer
    for item in _results(reply.text):
        if str(item.get("Status", "")).lower() == "failed":
            message = item.get("Message") or "Postmark did not suppress the address"
            return Answer(422, str(message)[:DETAIL_CHARS])
    return answer


def _results(text: str) -> list[dict[str, Any]]:
    """The per-address results of the body (``{"Suppressions": [...]}`` or a bare list)."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return []
    if isinstance(document, dict):
        document = document.get("Suppressions")
    return (
        [item for item in document if isinstance(item, dict)] if isinstance(document, list) else []
    )
