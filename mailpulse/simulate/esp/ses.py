"""SES's side for ``mailpulse simulate``: SES events, delivered by SNS, one per request.

With ``signing_key`` (an RSA private key PEM) and ``certificate_url`` in the sender keys the
event goes out as a signed SNS ``Notification`` (``topic_arn``, ``signature_version`` 1 or 2
optional); otherwise as raw message delivery with ``basic_auth``. The SNS ``MessageId``
derives from the event's sequence and message id, so a retry carries the same one, as SNS's
retries do.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ingest.providers import shared_secret
from ingest.providers.ses import SesProvider
from ingest.providers.ses.sns import string_to_sign
from mailpulse.simulate.esp.base import Batch, Esp, OutboundRequest, SimulatedEvent

DEFAULT_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:mailpulse-simulated"
_NAMESPACE = uuid.UUID("6f1d3c0e-5b7a-4c1e-9a63-2f5e8b0d4a11")
_BOUNCE_TYPES = {
    "hard": ("Permanent", "General", "550 5.1.1 user unknown", "5.1.1"),
    "soft": ("Transient", "MailboxFull", "452 4.2.2 mailbox full", "4.2.2"),
    "undetermined": ("Undetermined", "Undetermined", None, None),
}


def sns_message_id(event: SimulatedEvent) -> str:
    """The SNS MessageId of a simulated event: the same on every retry."""
    return str(uuid.uuid5(_NAMESPACE, f"{event.sequence}:{event.message_id}"))


def iso(seconds: float) -> str:
    """SES/SNS time: ISO 8601 UTC with milliseconds and ``Z``."""
    millis = int(round(seconds * 1000))
    moment = datetime.fromtimestamp(millis // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis % 1000:03d}Z"


def encode_event(
    event: SimulatedEvent, *, url: str, now: float, sender: Mapping[str, str]
) -> OutboundRequest:
    """One request carrying ``event`` as SNS delivers it, authenticated per ``sender``."""
    message = orjson.dumps(ses_event(event)).decode()
    message_id = sns_message_id(event)
    topic_arn = sender.get("topic_arn") or DEFAULT_TOPIC_ARN
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "User-Agent": "Amazon Simple Notification Service Agent",
        "x-amz-sns-message-type": "Notification",
        "x-amz-sns-message-id": message_id,
        "x-amz-sns-topic-arn": topic_arn,
    }
    if sender.get("basic_auth"):
        headers["Authorization"] = shared_secret.basic_header(sender["basic_auth"])
    if sender.get("signing_key") and sender.get("certificate_url"):
        body = signed_notification(
            message,
            message_id=message_id,
            topic_arn=topic_arn,
            timestamp=iso(now),
            key_pem=sender["signing_key"],
            certificate_url=sender["certificate_url"],
            version=sender.get("signature_version") or "2",
        )
        return OutboundRequest(headers=headers, body=body)
    if not sender.get("basic_auth"):
        raise ValueError("ses sender needs basic_auth, or signing_key and certificate_url")
    headers["x-amz-sns-rawdelivery"] = "true"
    return OutboundRequest(headers=headers, body=message.encode())


def signed_notification(
    message: str,
    *,
    message_id: str,
    topic_arn: str,
    timestamp: str,
    key_pem: str,
    certificate_url: str,
    version: str = "2",
    subject: str | None = None,
) -> bytes:
    """An SNS Notification body signed with ``key_pem``, laid out as SNS lays it out."""
    envelope: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic_arn,
    }
    if subject is not None:
        envelope["Subject"] = subject
    envelope |= {"Message": message, "Timestamp": timestamp, "SignatureVersion": version}
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("signing_key must be an RSA private key")
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(string_to_sign(envelope), padding.PKCS1v15(), algorithm)
    region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else "us-east-1"
    envelope |= {
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": certificate_url,
        "UnsubscribeURL": f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe"
        f"&SubscriptionArn={topic_arn}:{uuid.uuid5(_NAMESPACE, topic_arn)}",
    }
    lines = [
        f"  {json.dumps(k)} : {json.dumps(v, ensure_ascii=False)}" for k, v in envelope.items()
    ]
    return ("{\n" + ",\n".join(lines) + "\n}").encode()


def ses_event(event: SimulatedEvent) -> dict[str, Any]:
    """The SES event-publishing object for one simulated event."""
    at = iso(event.occurred_at)
    recipient = event.recipient
    document: dict[str, Any] = {"eventType": "", "mail": _mail(event, at)}
    kind = event.event_type
    if kind == "sent":
        document |= {"eventType": "Send", "send": {}}
    elif kind == "delivered":
        document |= {"eventType": "Delivery", "delivery": _delivery(at, recipient)}
    elif kind == "deferred":
        document |= {"eventType": "DeliveryDelay", "deliveryDelay": _delay(event, at)}
    elif kind == "bounced":
        document |= {"eventType": "Bounce", "bounce": _bounce(event, at)}
    elif kind == "dropped":
        document |= _dropped(event, at)
    elif kind == "opened":
        document |= {"eventType": "Open", "open": _engagement(event, at)}
    elif kind == "clicked":
        click = _engagement(event, at) | {"link": event.url or "https://example.com/"}
        document |= {"eventType": "Click", "click": click | {"linkTags": {}}}
    elif kind == "complained":
        document |= {"eventType": "Complaint", "complaint": _complaint(event, at)}
    elif kind in ("unsubscribed", "resubscribed"):
        document |= {"eventType": "Subscription", "subscription": _subscription(kind, at)}
    else:
        raise ValueError(f"SES does not report {kind!r} events")
    return document


def _mail(event: SimulatedEvent, at: str) -> dict[str, Any]:
    tags: dict[str, list[str]] = {
        "ses:configuration-set": ["mailpulse-simulated"],
        "ses:from-domain": ["sim.mailpulse.dev"],
        "ses:caller-identity": ["mailpulse"],
    }
    for key, value in event.metadata.items():
        tags[key] = [value]
    if event.tags:
        tags["category"] = list(event.tags)
    if event.campaign is not None:
        tags["campaign"] = [event.campaign]
    return {
        "timestamp": at,
        "source": "news@sim.mailpulse.dev",
        "sendingAccountId": "123456789012",
        "messageId": event.message_id,
        "destination": [event.recipient],
        "headersTruncated": False,
        "commonHeaders": {
            "from": ["news@sim.mailpulse.dev"],
            "to": [event.recipient],
            "messageId": event.message_id,
            "subject": f"{event.campaign or 'Hello'} from mailpulse",
        },
        "tags": tags,
    }


def _delivery(at: str, recipient: str) -> dict[str, Any]:
    return {
        "timestamp": at,
        "processingTimeMillis": 812,
        "recipients": [recipient],
        "smtpResponse": "250 2.6.0 Message received",
        "reportingMTA": "a8-70.smtp-out.amazonses.com",
    }


def _delay(event: SimulatedEvent, at: str) -> dict[str, Any]:
    reason = event.reason or "421 4.4.1 Unable to connect to remote host"
    return {
        "timestamp": at,
        "delayType": "TransientCommunicationFailure",
        "delayedRecipients": [
            {
                "emailAddress": event.recipient,
                "status": event.smtp_status or "4.4.1",
                "diagnosticCode": f"smtp; {reason}",
            }
        ],
    }


def _bounce(event: SimulatedEvent, at: str) -> dict[str, Any]:
    bounce_type, subtype, text, status = _BOUNCE_TYPES.get(
        event.bounce_class or "", _BOUNCE_TYPES["undetermined"]
    )
    recipient: dict[str, Any] = {"emailAddress": event.recipient, "action": "failed"}
    if event.smtp_status or status:
        recipient["status"] = event.smtp_status or status
    if event.reason or text:
        recipient["diagnosticCode"] = f"smtp; {event.reason or text}"
    return {
        "bounceType": bounce_type,
        "bounceSubType": subtype,
        "bouncedRecipients": [recipient],
        "timestamp": at,
        "feedbackId": f"{sns_message_id(event)}-000000",
        "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
    }


def _dropped(event: SimulatedEvent, at: str) -> dict[str, Any]:
    if event.bounce_class in ("bounced", "invalid"):
        # SES reports a send to a suppressed address as a bounce that was never attempted.
        bounce = _bounce(event, at) | {
            "bounceType": "Permanent",
            "bounceSubType": "OnAccountSuppressionList",
        }
        bounce["bouncedRecipients"][0]["diagnosticCode"] = "Amazon SES did not send the message"
        return {"eventType": "Bounce", "bounce": bounce}
    if event.bounce_class == "template":
        failure = {"templateName": "simulated", "errorMessage": event.reason or "missing data"}
        return {"eventType": "Rendering Failure", "failure": failure}
    return {"eventType": "Reject", "reject": {"reason": event.reason or "Bad content"}}


def _engagement(event: SimulatedEvent, at: str) -> dict[str, Any]:
    return {
        "timestamp": at,
        "ipAddress": event.ip or "192.0.2.1",
        "userAgent": event.user_agent or "Mozilla/5.0",
    }


def _complaint(event: SimulatedEvent, at: str) -> dict[str, Any]:
    return {
        "complainedRecipients": [{"emailAddress": event.recipient}],
        "timestamp": at,
        "feedbackId": f"{sns_message_id(event)}-000000",
        "complaintFeedbackType": "abuse",
        "arrivalDate": at,
    }


def _subscription(kind: str, at: str) -> dict[str, Any]:
    unsubscribed = kind == "unsubscribed"
    return {
        "contactList": "mailpulse",
        "timestamp": at,
        "source": "UnsubscribeHeader",
        "newTopicPreferences": {"unsubscribeAll": unsubscribed},
        "oldTopicPreferences": {"unsubscribeAll": not unsubscribed},
    }


class SesEsp(Esp):
    """Ses's sending side."""

    provider = SesProvider

    def message_id(self, sequence: int, seed: int) -> str:
        """An SES-style message id (hex, a UUID, ``-000000``)."""
        return f"{(seed * 1_000_003 + sequence) % 16**16:016x}-{_uuid(seed, sequence)}-000000"

    def write(self, batch: Batch) -> OutboundRequest:
        """One SNS delivery of one SES event (SNS sends one message per request)."""
        events, url, now, sender = batch
        if len(events) != 1:
            raise ValueError("SNS delivers exactly one message per request")
        return encode_event(events[0], url=url, now=now, sender=sender)

    @classmethod
    def demo_credentials(cls, url: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Basic credentials for raw message delivery, shared by both sides."""
        credential = f"sns:{secrets.token_urlsafe(24)}"
        return {"basic_auth": [credential]}, {"basic_auth": credential}


def _uuid(seed: int, sequence: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailpulse-ses:{seed}.{sequence}"))
