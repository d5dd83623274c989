"""The provider registry: one module per ESP, each behind :class:`~ingest.providers.base.Provider`.

Adding a provider means one new module, one line here, and its tests.
"""

from __future__ import annotations

from ingest.providers.base import InboundRequest, NormalizeContext, Provider
from ingest.providers.brevo import BrevoProvider
from ingest.providers.generic import GenericProvider
from ingest.providers.mailgun import MailgunProvider
from ingest.providers.mailjet import MailjetProvider
from ingest.providers.mandrill import MandrillProvider
from ingest.providers.postmark import PostmarkProvider
from ingest.providers.resend import ResendProvider
from ingest.providers.sendgrid import SendGridProvider
from ingest.providers.ses import SesProvider
from ingest.providers.sparkpost import SparkPostProvider

PROVIDERS: dict[str, type[Provider]] = {
    provider.name: provider
    for provider in (
        BrevoProvider,
        GenericProvider,
        MailgunProvider,
        MailjetProvider,
        MandrillProvider,
        PostmarkProvider,
        ResendProvider,
        SendGridProvider,
        SesProvider,
        SparkPostProvider,
    )
}

__all__ = ["PROVIDERS", "InboundRequest", "NormalizeContext", "Provider"]
