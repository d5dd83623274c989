"""``do = "slack"``: one message per event to a Slack incoming webhook.

The message is the action's ``template`` filled with the event's fields (a missing or empty
field renders as nothing). Slack answers ``ok`` (200), a 4xx with a short reason
(``invalid_payload``, ``no_service``, ``channel_is_archived``) or 429 with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ingest.actions.destinations.base import Answer, Delivery
from ingest.actions.destinations.http import HttpClient
from mailpulse.actions_config import DEFAULT_TEMPLATE, ActionConfig


class EventFields(dict[str, str]):
    """The event's fields as message text: None and missing fields are ``""``, lists joined.

    Values are escaped as Slack asks (``&``, ``<``, ``>``): they come from the ESP's payload,
    and ``<!channel>`` in a user agent or a clicked link must not notify a whole channel.
    """

    def __init__(self, event: Mapping[str, Any]) -> None:
        super().__init__({name: _text(value) for name, value in event.items()})

    def __missing__(self, key: str) -> str:
        return ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        text = ", ".join(str(item) for item in value if item is not None)
    else:
        text = str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackDestination:
    """Posts a message per delivery to the action's (secret) incoming-webhook URL."""

    def __init__(self, action: ActionConfig) -> None:
        url = action.secret("url")
        if url is None:
            raise ValueError(f"action {action.name} has no incoming-webhook URL")
        self._url = url
        self.template: str = action.options.get("template", DEFAULT_TEMPLATE)
        self._http = HttpClient(action)

    def message(self, delivery: Delivery) -> str:
        """The message text for ``delivery``."""
        return self.template.format_map(EventFields(delivery.event))

    def send(self, delivery: Delivery) -> Answer:
        """Post the message for ``delivery`` once."""
        try:
            text = self.message(delivery)
        except (ValueError, TypeError, LookupError, AttributeError) as exc:
            # A format spec the value cannot take ("{recipient:d}"): final, the same each time.
            return Answer(422, f"the template could not be filled: {type(exc).__name__}")
        body = orjson.dumps({"text": text})
        return self._http.post(self._url, headers={"Content-Type": "application/json"}, data=body)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()
