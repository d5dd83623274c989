"""``do = "suppress"``, ``provider = "sendgrid"``: the address onto a SendGrid suppression.

``POST /v3/asm/suppressions/global`` stops all mail to the address; with ``group_id`` it goes
to that unsubscribe group instead (``POST /v3/asm/groups/{group_id}/suppressions``). Bounces
and spam reports have lists SendGrid fills itself; the global list is the one a customer's
own decision goes to.
"""

from __future__ import annotations

import orjson

from ingest.actions.destinations.base import Answer, Delivery
from ingest.actions.destinations.http import NO_RECIPIENT, HttpClient, recipient_of
from mailpulse.actions_config import ActionConfig

BASE_URL = "https://api.sendgrid.com"


class SendGridDestination:
    """Adds each delivery's recipient to the global (or one group's) suppression list."""

    def __init__(self, action: ActionConfig) -> None:
        api_key = action.secret("api_key")
        if api_key is None:
            raise ValueError(f"action {action.name}: sendgrid needs an API key")
        self._api_key = api_key
        base = str(action.options.get("endpoint_url") or BASE_URL).rstrip("/")
        group = action.options.get("group_id")
        path = (
            "/v3/asm/suppressions/global"
            if group is None
            else f"/v3/asm/groups/{group}/suppressions"
        )
        self.url = base + path
        self._http = HttpClient(action)

    def send(self, delivery: Delivery) -> Answer:
        """Suppress the delivery's recipient once."""
        recipient = recipient_of(delivery)
        if recipient is None:
            return NO_RECIPIENT
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        body = orjson.dumps({"recipient_emails": [recipient]})
        return self._http.post(self.url, headers=headers, data=body)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()
