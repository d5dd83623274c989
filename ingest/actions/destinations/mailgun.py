"""``do = "suppress"``, ``provider = "mailgun"``: the address onto a Mailgun suppression list.

Each event type has its list: ``bounced`` goes to ``/v3/{domain}/bounces`` (with the SMTP code
and error), ``complained`` to ``/complaints``, ``unsubscribed`` to ``/unsubscribes`` (``tag =
*``: every tag). Authentication is HTTP Basic, user ``api``, the private API key as password.
EU domains live on ``https://api.eu.mailgun.net`` (``endpoint_url``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ingest.actions.destinations.base import Answer, Delivery
from ingest.actions.destinations.http import NO_RECIPIENT, HttpClient, recipient_of
from mailpulse.actions_config import ActionConfig

BASE_URL = "https://api.mailgun.net"
LISTS = {"bounced": "bounces", "complained": "complaints", "unsubscribed": "unsubscribes"}
#: Mailgun's own default code for a bounce added by hand.
DEFAULT_CODE = "550"
_PERMANENT_CODE = re.compile(r"5\d\d")


class MailgunDestination:
    """Adds each delivery's recipient to the domain's list for the event's type."""

    def __init__(self, action: ActionConfig) -> None:
        api_key = action.secret("api_key")
        if api_key is None:
            raise ValueError(f"action {action.name}: mailgun needs an API key")
        self._auth = ("api", api_key)
        base = str(action.options.get("endpoint_url") or BASE_URL).rstrip("/")
        domain = urllib.parse.quote(str(action.options["domain"]), safe="")
        self.base = f"{base}/v3/{domain}"
        # Basic auth travels base64-encoded: an answer echoing it must be caught in that form.
        self._http = HttpClient(action, extra_secrets=[f"api:{api_key}"])

    def send(self, delivery: Delivery) -> Answer:
        """Suppress the delivery's recipient once, on the list its event type belongs to."""
        recipient = recipient_of(delivery)
        if recipient is None:
            return NO_RECIPIENT
        event_type = delivery.event.get("event_type")
        name = LISTS.get(str(event_type))
        if name is None:
            return Answer(422, f"mailgun has no suppression list for {event_type} events")
        form = suppression_form(name, recipient, delivery.event)
        return self._http.post(f"{self.base}/{name}", data=form, auth=self._auth)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()


def suppression_form(name: str, recipient: str, event: Mapping[str, Any]) -> dict[str, str]:
    """The form fields of one record for the list ``name``."""
    if name == "bounces":
        status = str(event.get("smtp_status") or "").strip()
        code = status if _PERMANENT_CODE.fullmatch(status) else DEFAULT_CODE
        return {"address": recipient, "code": code, "error": str(event.get("reason") or "")}
    if name == "unsubscribes":
        return {"address": recipient, "tag": "*"}
    return {"address": recipient}
