"""The ESPs' sending side, one module per ESP, for ``mailpulse simulate`` and the demo.

Each module writes requests exactly as its ESP sends them, for the receiving side of the same
name in :mod:`ingest.providers`; the receiver never imports this package.
"""

from __future__ import annotations

from mailpulse.simulate.esp.base import Esp, OutboundRequest, SimulatedEvent
from mailpulse.simulate.esp.brevo import BrevoEsp
from mailpulse.simulate.esp.generic import GenericEsp
from mailpulse.simulate.esp.mailgun import MailgunEsp
from mailpulse.simulate.esp.mailjet import MailjetEsp
from mailpulse.simulate.esp.mandrill import MandrillEsp
from mailpulse.simulate.esp.postmark import PostmarkEsp
from mailpulse.simulate.esp.resend import ResendEsp
from mailpulse.simulate.esp.sendgrid import SendGridEsp
from mailpulse.simulate.esp.ses import SesEsp
from mailpulse.simulate.esp.sparkpost import SparkPostEsp

ESPS: dict[str, Esp] = {
    esp.name: esp
    for esp in (
        BrevoEsp(),
        GenericEsp(),
        MailgunEsp(),
        MailjetEsp(),
        MandrillEsp(),
        PostmarkEsp(),
        ResendEsp(),
        SendGridEsp(),
        SesEsp(),
        SparkPostEsp(),
    )
}

__all__ = ["ESPS", "Esp", "OutboundRequest", "SimulatedEvent"]
