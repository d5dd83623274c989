"""``ses``: Amazon SES events delivered by Amazon SNS to an HTTP(S) subscription.

Authentication, fail-closed:

* Signed SNS messages (the default): the SNS signature (v1 SHA1withRSA, v2 SHA256withRSA) is
  verified with the certificate at ``SigningCertURL``, which must be
  ``https://sns.<region>.amazonaws.com/<name>.pem`` (``.amazonaws.com.cn`` for China
  regions); anything else is refused without a network call. The ``TopicArn`` must be in the
  source's ``topic_arns``; the ``Timestamp`` within ``timestamp_tolerance_seconds`` (default
  3,900: SNS retries for at most an hour with the original timestamp, plus 5 minutes of
  clock skew); the certificate valid at our clock. Certificates are cached per URL; the
  option ``certificate_dir`` holds pinned PEM files, named ``sha256(url).hexdigest() + ".pem"``,
  read before any download (air-gapped receivers, tests). A certificate that cannot be
  downloaded right now is answered 503, so SNS retries. To pin AWS's certificate::

      URL=https://sns.us-east-1.amazonaws.com/SimpleNotificationService-<id>.pem
      curl -o "$DIR/$(printf %s "$URL" | sha256sum | cut -d' ' -f1).pem" "$URL"

  There is no replay guard: SNS retries re-send the very same signed message, so a replay
  looks like a retry, and the flusher's dedup on MessageId drops both alike.
* Raw message delivery (``x-amz-sns-rawdelivery: true``: bare SES JSON, nothing signed) is
  accepted only with ``basic_auth`` (the credentials in the subscription URL, which SNS sends
  on every request; when configured, they are required on signed messages too).

``SubscriptionConfirmation`` messages are verified like any other and stored (they give no
rows). With ``auto_confirm = true`` the ``SubscribeURL`` (only an https SNS host) is visited
on a background thread; otherwise it is logged at WARNING for a person to open. The URL
carries SNS's confirmation token, which is not one of our secrets.

Dedup: the SNS ``MessageId`` (kept on SNS's retries) plus the recipient. Raw delivery has no
envelope: the ``x-amz-sns-message-id`` header when present, else a hash of SES message id,
event type, recipient, event time and link. See :mod:`.mapping` for the event mapping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import requests

from ingest.errors import AuthenticationFailed, MappingError, PayloadError
from ingest.providers import shared_secret
from ingest.providers.base import (
    InboundRequest,
    NormalizeContext,
    Provider,
    ReplayGuard,
)
from ingest.providers.events import MESSAGE_EVENT_TYPES, Event, load_json
from ingest.providers.ses import mapping, sns
from mailpulse.config import SourceConfig

log = logging.getLogger(__name__)

RAW_DELIVERY_HEADER = "x-amz-sns-rawdelivery"
MESSAGE_TYPE_HEADER = "x-amz-sns-message-type"
MESSAGE_ID_HEADER = "x-amz-sns-message-id"
CONFIRM_TIMEOUT_SECONDS = 5.0
_OPTIONS = ("topic_arns", "certificate_dir", "auto_confirm", "timestamp_tolerance_seconds")


class SesProvider(Provider):
    """Amazon SES event publishing and notifications, through SNS."""

    name = "ses"
    credential_keys = frozenset({shared_secret.BASIC_AUTH})
    option_keys = frozenset(_OPTIONS)
    content_types = frozenset({"text/plain", "application/json"})
    dedup_key = "SNS MessageId + recipient (raw delivery: x-amz-sns-message-id, else a hash)"
    default_campaign_field = "campaign"
    credential_headers = frozenset({"authorization"})
    max_batch = 1
    emits = MESSAGE_EVENT_TYPES | {"resubscribed"}

    def __init__(self, source: SourceConfig, *, replay: ReplayGuard | None = None) -> None:
        super().__init__(source, replay=replay)
        self.topic_arns = frozenset(_topic_arns(source.options.get("topic_arns")))
        directory = source.options.get("certificate_dir")
        self.certificates = sns.CertificateStore(
            Path(directory).expanduser() if isinstance(directory, str) else None
        )
        tolerance: Any = source.options.get("timestamp_tolerance_seconds")
        self.tolerance = float(tolerance) if _is_number(tolerance) else None
        self.auto_confirm = source.options.get("auto_confirm") is True
        #: How a SubscribeURL is visited (a seam for tests: SNS hosts are not reachable here).
        self.http_get: Any = requests.get

    @classmethod
    def config_problems(cls, source: SourceConfig) -> list[str]:
        """Signed SNS needs ``topic_arns``; raw delivery needs ``basic_auth``; one is a must."""
        problems: list[str] = []
        topics = source.options.get("topic_arns")
        basic = source.credentials.get(shared_secret.BASIC_AUTH)
        if not topics and not basic:
            return [
                "needs topic_arns (signed SNS messages) and/or basic_auth (raw message "
                "delivery) (a source without credentials refuses nothing)"
            ]
        listed = [topics] if isinstance(topics, str) else topics
        if topics is not None and (
            not isinstance(listed, list) or len(_topic_arns(topics)) != len(listed)
        ):
            problems.append('topic_arns must be a list of SNS topic ARNs ("arn:aws:sns:...")')
        if basic:
            problems.extend(shared_secret.config_problems(source))
        directory = source.options.get("certificate_dir")
        if directory is not None and (
            not isinstance(directory, str) or not Path(directory).expanduser().is_dir()
        ):
            problems.append(f"certificate_dir {directory!r} is not a directory")
        if not isinstance(source.options.get("auto_confirm", False), bool):
            problems.append("auto_confirm must be true or false")
        tolerance = source.options.get("timestamp_tolerance_seconds")
        if tolerance is not None and (not _is_number(tolerance) or tolerance <= 0):
            problems.append("timestamp_tolerance_seconds must be a positive number")
        return problems

    # -- receiving

    def authenticate(self, request: InboundRequest, now: float) -> None:
        """Basic credentials when configured; then the SNS signature unless raw delivery."""
        basic = self.source.credentials.get(shared_secret.BASIC_AUTH)
        if _is_raw(request.headers):
            if not basic:
                raise AuthenticationFailed(
                    "raw message delivery is unsigned and this source has no basic_auth",
                    code="raw_delivery_unauthenticated",
                )
            shared_secret.check(request.headers, self.source, default_token_header="authorization")
            return
        if basic:  # SNS sends the subscription URL's credentials on every request
            shared_secret.check(request.headers, self.source, default_token_header="authorization")
        envelope = sns.parse_envelope(request.body)
        sns.verify(
            envelope,
            store=self.certificates,
            topic_arns=self.topic_arns,
            now=now,
            tolerance=self.tolerance or sns.DEFAULT_TOLERANCE_SECONDS,
        )

    def accepted(self, request: InboundRequest) -> None:
        """Confirm (or log) a stored subscription confirmation; notifications return at once."""
        if _is_raw(request.headers) or request.headers.get(MESSAGE_TYPE_HEADER) == "Notification":
            return
        try:
            message = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return
        if not isinstance(message, dict) or not _is_confirmation(message.get("Type")):
            return
        topic = str(message.get("TopicArn"))
        url = message.get("SubscribeURL")
        facts = {"source": self.source.name, "topic_arn": topic}
        if message["Type"] == "UnsubscribeConfirmation":
            log.warning("SNS subscription was unsubscribed", extra=facts)
        elif not isinstance(url, str) or not sns.is_aws_subscribe_url(url):
            log.error("SNS SubscribeURL is not an https SNS URL; not confirmed", extra=facts)
        elif self.auto_confirm:
            threading.Thread(
                target=self._confirm, args=(url, facts), name="sns-confirm", daemon=True
            ).start()
        else:
            log.warning(
                "SNS subscription awaits confirmation: open the SubscribeURL",
                extra={**facts, "subscribe_url": url},
            )

    def _confirm(self, url: str, facts: Mapping[str, str]) -> None:
        try:
            response = self.http_get(url, timeout=CONFIRM_TIMEOUT_SECONDS, allow_redirects=False)
        except requests.RequestException as exc:
            log.error(
                "SNS subscription confirmation failed",
                extra={**facts, "error": type(exc).__name__},
            )
            return
        status = getattr(response, "status_code", None)
        level = logging.INFO if status == 200 else logging.ERROR
        log.log(level, "SNS subscription confirmation answered", extra={**facts, "status": status})

    # -- flusher

    def split(self, body: bytes, headers: Mapping[str, str]) -> list[Any]:
        """``{"MessageId", "Message"}`` with the SES event decoded; control notices give none.

        SNS's own notices (subscription and unsubscribe confirmations, which SNS never sends
        raw, and plain-text test messages such as SES's "Successfully validated SNS topic")
        are kept in the raw lake like every request and logged; they carry no event.
        """
        document = load_json(body)
        if not isinstance(document, dict):
            raise PayloadError("body must be a JSON object")
        kind = document.get("Type")
        if _is_confirmation(kind) and (not _is_raw(headers) or "SubscribeURL" in document):
            _control_notice(str(kind), document)
            return []
        if _is_raw(headers):
            message_id = headers.get(MESSAGE_ID_HEADER) or None
            return [{"MessageId": message_id, "Message": document}]
        if kind != sns.NOTIFICATION:
            raise PayloadError(f"SNS message Type {str(kind)[:40]!r} is not supported")
        message = document.get("Message")
        if not isinstance(message, str):
            raise PayloadError("SNS Notification has no Message string")
        try:
            event = orjson.loads(message)
        except orjson.JSONDecodeError:
            # SES publishes JSON only: plain text is a topic test (the console's "Publish
            # message", SES validating the topic), acknowledged and recorded, not an event.
            _control_notice("test message", document)
            return []
        return [{"MessageId": document.get("MessageId"), "Message": event}]

    def normalize(self, item: Any, context: NormalizeContext) -> list[Event]:
        """One SES event (wrapped by ``split``, or bare) to one row per recipient."""
        if not isinstance(item, dict):
            raise MappingError("an SES item must be a JSON object")
        if "Message" in item:
            event, message_id = item["Message"], item.get("MessageId")
        else:
            event, message_id = item, None
        if not isinstance(event, dict):
            raise MappingError("the SNS Message is not an SES event (not a JSON object)")
        if message_id is not None and (not isinstance(message_id, str) or not message_id):
            raise MappingError("SNS MessageId must be a string")
        try:
            return mapping.event_rows(
                event,
                sns_message_id=message_id,
                campaign_field=self.campaign_field(context) or "campaign",
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise MappingError(f"SES event could not be mapped: {exc}"[:300]) from None

    # -- simulator


def _is_raw(headers: Mapping[str, str]) -> bool:
    return headers.get(RAW_DELIVERY_HEADER, "").strip().lower() == "true"


def _is_confirmation(kind: Any) -> bool:
    return isinstance(kind, str) and kind in sns.CONFIRMATION_TYPES


def _control_notice(kind: str, document: Mapping[str, Any]) -> None:
    log.info(
        "SNS control notice recorded (no event)",
        extra={
            "notice": kind,
            "topic_arn": str(document.get("TopicArn"))[:256],
            "sns_message_id": str(document.get("MessageId"))[:128],
        },
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _topic_arns(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, str) and v.startswith("arn:aws") and ":sns:" in v]
