"""Where an action's deliveries go: one module per kind, all behind :class:`Destination`.

* ``webhook``: a Standard Webhooks signed POST of the event (:mod:`.webhook`);
* ``slack``: a message to a Slack incoming webhook (:mod:`.slack`);
* ``suppress``: the recipient onto the ESP's own suppression list, one module per
  provider: :mod:`.sendgrid`, :mod:`.mailgun`, :mod:`.postmark`, :mod:`.ses`.

The HTTP kinds share :mod:`.http` (a session per thread, answers, failure sentences).
"""

from __future__ import annotations

from collections.abc import Callable

from ingest.actions.destinations.base import Answer, Delivery, Destination
from ingest.actions.destinations.mailgun import MailgunDestination
from ingest.actions.destinations.postmark import PostmarkDestination
from ingest.actions.destinations.sendgrid import SendGridDestination
from ingest.actions.destinations.ses import SesDestination
from ingest.actions.destinations.slack import SlackDestination
from ingest.actions.destinations.webhook import WebhookDestination
from mailpulse.actions_config import ActionConfig

__all__ = ["Answer", "Delivery", "Destination", "build_destination"]

SUPPRESSORS: dict[str, Callable[[ActionConfig], Destination]] = {
    "sendgrid": SendGridDestination,
    "mailgun": MailgunDestination,
    "postmark": PostmarkDestination,
    "ses": SesDestination,
}


def build_destination(action: ActionConfig) -> Destination:
    """The destination that performs ``action`` (a validated action; see ``actions_config``).

    Raises:
        ValueError: the action's kind (or suppression provider) is not one there is.
    """
    if action.do == "webhook":
        return WebhookDestination(action)
    if action.do == "slack":
        return SlackDestination(action)
    if action.do == "suppress":
        provider = action.options.get("provider")
        if provider in SUPPRESSORS:
            return SUPPRESSORS[provider](action)
        raise ValueError(f"action {action.name}: no suppression provider {provider!r}")
    raise ValueError(f"action {action.name}: no destination kind {action.do!r}")
