"""``do = "suppress"``, ``provider = "ses"``: the address onto the SES account suppression list.

SES v2 ``PutSuppressedDestination`` through boto3, with reason ``BOUNCE`` or ``COMPLAINT``.
Credentials are the action's ``aws_access_key_id``/``aws_secret_access_key`` when given, else
boto3's own chain (environment, shared files, instance or task role). boto3 does not retry
here: the dispatcher does, with the action's backoff.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from ingest.actions.destinations.base import DETAIL_CHARS, Answer, Delivery
from ingest.actions.destinations.http import (
    NO_RECIPIENT,
    parse_retry_after,
    recipient_of,
    redact,
    secret_values,
)
from mailpulse.actions_config import ActionConfig

REASONS = {"bounced": "BOUNCE", "complained": "COMPLAINT"}


class SesDestination:
    """Puts each delivery's recipient on the account-level suppression list of SES."""

    def __init__(self, action: ActionConfig) -> None:
        self.action = action
        self.timeout = action.timeout_seconds
        self._secrets = secret_values(action)
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """The SES v2 client, made on first use (boto3 clients are safe to share by threads)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        action, options = self.action, self.action.options
        config = botocore.config.Config(
            retries={"total_max_attempts": 1},
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            max_pool_connections=max(10, action.concurrency),
            user_agent_extra="mailpulse",
        )
        # A session of its own: boto3's default session is shared module state.
        session = boto3.session.Session(
            aws_access_key_id=action.secret("aws_access_key_id"),
            aws_secret_access_key=action.secret("aws_secret_access_key"),
        )
        return session.client(
            "sesv2",
            region_name=options.get("region"),
            endpoint_url=options.get("endpoint_url"),
            config=config,
        )

    def send(self, delivery: Delivery) -> Answer:
        """Suppress the delivery's recipient once."""
        recipient = recipient_of(delivery)
        if recipient is None:
            return NO_RECIPIENT
        event_type = delivery.event.get("event_type")
        reason = REASONS.get(str(event_type))
        if reason is None:
            return Answer(422, f"SES has no suppression reason for {event_type} events")
        try:
            reply = self.client().put_suppressed_destination(EmailAddress=recipient, Reason=reason)
        except botocore.exceptions.ClientError as exc:
            return self._refused(exc)
        except botocore.exceptions.BotoCoreError as exc:
            return self._failed(exc)
        status = reply.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
        return Answer(int(status), "")

    def _refused(self, exc: botocore.exceptions.ClientError) -> Answer:
        """The answer for an error SES returned (a status, its code and message)."""
        response: dict[str, Any] = exc.response
        metadata = response.get("ResponseMetadata", {})
        error = response.get("Error", {})
        detail = ": ".join(str(part) for part in (error.get("Code"), error.get("Message")) if part)
        return Answer(
            metadata.get("HTTPStatusCode"),
            redact(detail, self._secrets)[:DETAIL_CHARS],
            parse_retry_after(metadata.get("HTTPHeaders", {}).get("retry-after")),
        )

    def _failed(self, exc: botocore.exceptions.BotoCoreError) -> Answer:
        """The answer when no answer came, or the request could not be made at all."""
        seconds = f"{self.timeout:g} s"
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            # Final: no retry finds credentials that are not configured.
            return Answer(401, "no AWS credentials found (set the action's AWS keys or a role)")
        if isinstance(exc, botocore.exceptions.NoRegionError):
            return Answer(400, "no AWS region: set region in the action or AWS_REGION")
        if isinstance(exc, botocore.exceptions.ConnectTimeoutError):
            return Answer(None, f"connecting to SES timed out after {seconds}")
        if isinstance(exc, botocore.exceptions.ReadTimeoutError):
            return Answer(None, f"no answer from SES: reading timed out after {seconds}")
        if isinstance(exc, botocore.exceptions.EndpointConnectionError):
            return Answer(None, "could not connect to the SES endpoint")
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            return Answer(422, "SES does not take this address")
        # botocore's messages can name the endpoint or the request; the type says enough.
        return Answer(None, f"the SES request failed ({type(exc).__name__})")

    def close(self) -> None:
        """Close the client's connections."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
