"""Suppression destinations against loopback servers playing each ESP's documented API.

SendGrid, Mailgun and Postmark are plain HTTP; SES goes through boto3, signed with Signature
Version 4, to a server that answers as SES v2 does.
"""

from __future__ import annotations

import base64
import secrets
import urllib.parse
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from ingest.actions.destinations import build_destination
from ingest.actions.destinations.base import Answer
from ingest.actions.destinations.mailgun import MailgunDestination
from ingest.actions.destinations.postmark import PostmarkDestination
from ingest.actions.destinations.sendgrid import SendGridDestination
from ingest.actions.destinations.ses import SesDestination
from mailpulse import __version__
from mailpulse.demo import free_port
from tests.actions.test_destinations import (
    Loopback,
    Reply,
    delivery,
    make_action,
    new_key,
    running_loopback,
)


@pytest.fixture
def server() -> Iterator[Loopback]:
    """A loopback server playing the ESP's API, recording each request."""
    with running_loopback() as loopback:
        yield loopback


# --- SendGrid ------------------------------------------------------------------------------


def test_sendgrid_global_suppression(server: Loopback) -> None:
    key = new_key("SG.")
    action = make_action(
        "suppress",
        provider="sendgrid",
        api_key=key,
        endpoint_url=server.url,
        event_types=["unsubscribed"],
    )
    destination = build_destination(action)
    assert isinstance(destination, SendGridDestination)
    server.answer(Reply(201, b'{"recipient_emails":["ada@example.com"]}'))
    answer = destination.send(delivery(event_type="unsubscribed"))
    destination.close()

    assert answer.status == 201
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v3/asm/suppressions/global")
    assert request.headers["authorization"] == f"Bearer {key}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"mailpulse/{__version__}"
    assert orjson.loads(request.body) == {"recipient_emails": ["ada@example.com"]}


def test_sendgrid_group_suppression(server: Loopback) -> None:
    action = make_action(
        "suppress",
        provider="sendgrid",
        api_key=new_key("SG."),
        endpoint_url=server.url + "/",
        group_id=4242,
        event_types=["unsubscribed"],
    )
    destination = build_destination(action)
    destination.send(delivery(event_type="unsubscribed"))
    destination.close()
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v3/asm/groups/4242/suppressions")
    assert orjson.loads(request.body) == {"recipient_emails": ["ada@example.com"]}


# --- Mailgun -------------------------------------------------------------------------------


def _mailgun(server: Loopback, key: str) -> MailgunDestination:
    action = make_action(
        "suppress",
        provider="mailgun",
        api_key=key,
        domain="mg.example.com",
        endpoint_url=server.url,
        event_types=["bounced", "complained", "unsubscribed"],
    )
    destination = build_destination(action)
    assert isinstance(destination, MailgunDestination)
    return destination


@pytest.mark.parametrize(
    ("event", "path", "form"),
    [
        (
            {"event_type": "bounced", "smtp_status": "554", "reason": "mailbox unknown"},
            "/v3/mg.example.com/bounces",
            {"address": ["ada@example.com"], "code": ["554"], "error": ["mailbox unknown"]},
        ),
        (
            {"event_type": "bounced", "smtp_status": "5.1.1"},
            "/v3/mg.example.com/bounces",
            {"address": ["ada@example.com"], "code": ["550"], "error": [""]},
        ),
        (
            {"event_type": "complained"},
            "/v3/mg.example.com/complaints",
            {"address": ["ada@example.com"]},
        ),
        (
            {"event_type": "unsubscribed"},
            "/v3/mg.example.com/unsubscribes",
            {"address": ["ada@example.com"], "tag": ["*"]},
        ),
    ],
)
def test_mailgun_list_per_event_type(
    server: Loopback,
    event: dict[str, Any],
    path: str,
    form: dict[str, list[str]],
) -> None:
    key = new_key("key-")
    destination = _mailgun(server, key)
    answer = destination.send(delivery(**event))
    destination.close()

    assert answer.ok
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", path)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    basic = base64.b64encode(f"api:{key}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    parsed = urllib.parse.parse_qs(request.body.decode(), keep_blank_values=True)
    assert parsed == form


def test_mailgun_answer_echoing_the_key_is_redacted(server: Loopback) -> None:
    server.answer(Reply(401, echo=True))
    key = new_key("key-")
    destination = _mailgun(server, key)
    answer = destination.send(delivery(event_type="complained"))
    destination.close()
    basic = base64.b64encode(f"api:{key}".encode()).decode()
    assert answer.status == 401
    assert basic not in answer.detail
    assert "Basic ***" in answer.detail


def test_mailgun_has_no_list_for_other_events(server: Loopback) -> None:
    destination = _mailgun(server, new_key())
    answer = destination.send(delivery(event_type="dropped"))
    destination.close()
    assert answer == Answer(422, "mailgun has no suppression list for dropped events")
    assert server.requests == []


# --- Postmark ------------------------------------------------------------------------------


def _postmark(server: Loopback, token: str, **options: Any) -> PostmarkDestination:
    action = make_action(
        "suppress",
        provider="postmark",
        api_key=token,
        endpoint_url=server.url,
        event_types=["complained"],
        **options,
    )
    destination = build_destination(action)
    assert isinstance(destination, PostmarkDestination)
    return destination


def test_postmark_suppression(server: Loopback) -> None:
    body = {"Suppressions": [{"EmailAddress": "ada@example.com", "Status": "Suppressed"}]}
    server.answer(Reply(200, orjson.dumps(body)))
    token = new_key()
    destination = _postmark(server, token, message_stream="broadcast")
    answer = destination.send(delivery(event_type="complained"))
    destination.close()

    assert answer.status == 200
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/message-streams/broadcast/suppressions")
    assert request.headers["x-postmark-server-token"] == token
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.body) == {"Suppressions": [{"EmailAddress": "ada@example.com"}]}


def test_postmark_failed_address_is_final(server: Loopback) -> None:
    """Postmark answers 200 and says Failed in the body: that is a 422 with its message."""
    item = {"EmailAddress": "ada@example.com", "Status": "Failed", "Message": "Invalid email"}
    server.answer(Reply(200, orjson.dumps({"Suppressions": [item]})))
    destination = _postmark(server, new_key())
    answer = destination.send(delivery(event_type="complained"))
    destination.close()
    assert answer == Answer(422, "Invalid email")
    assert server.requests[0].path == "/message-streams/outbound/suppressions"


# --- every provider ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"provider": "sendgrid"},
        {"provider": "mailgun", "domain": "mg.example.com"},
        {"provider": "postmark"},
        {"provider": "ses", "region": "us-east-1"},
    ],
    ids=lambda options: options["provider"],
)
def test_an_event_without_recipient_is_final(
    server: Loopback,
    options: dict[str, Any],
) -> None:
    if options["provider"] != "ses":
        options = {**options, "api_key": new_key()}
    action = make_action("suppress", endpoint_url=server.url, event_types=["bounced"], **options)
    destination = build_destination(action)
    assert destination.send(delivery(event_type="bounced", recipient=None)) == Answer(
        422, "the event has no recipient address"
    )
    destination.close()
    assert server.requests == []


# --- SES -----------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No AWS credentials or config from the machine: only what the action gives."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _ses(url: str, **table: Any) -> SesDestination:
    table.setdefault("region", "eu-west-1")
    action = make_action(
        "suppress", provider="ses", endpoint_url=url, event_types=["bounced", "complained"], **table
    )
    destination = build_destination(action)
    assert isinstance(destination, SesDestination)
    return destination


def _aws_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": "AKIATEST" + secrets.token_hex(6).upper(),
        "aws_secret_access_key": new_key(),
    }


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize(
    ("event_type", "reason"), [("bounced", "BOUNCE"), ("complained", "COMPLAINT")]
)
def test_ses_put_suppressed_destination(
    server: Loopback,
    event_type: str,
    reason: str,
) -> None:
    server.answer(Reply(200, b"{}", {"Content-Type": "application/json"}))
    keys = _aws_keys()
    destination = _ses(server.url, **keys)
    answer = destination.send(delivery(event_type=event_type))
    destination.close()

    assert answer == Answer(200, "")
    (request,) = server.requests
    assert (request.method, request.path) == ("PUT", "/v2/email/suppression/addresses")
    assert orjson.loads(request.body) == {"EmailAddress": "ada@example.com", "Reason": reason}
    authorization = request.headers["authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={keys['aws_access_key_id']}/")
    assert "/eu-west-1/ses/aws4_request" in authorization
    assert keys["aws_secret_access_key"] not in authorization


@pytest.mark.usefixtures("aws_env")
def test_ses_error_answer(server: Loopback) -> None:
    error = {"__type": "BadRequestException", "message": "Invalid email address"}
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "BadRequestException"}
    server.answer(Reply(400, orjson.dumps(error), headers))
    destination = _ses(server.url, **_aws_keys())
    answer = destination.send(delivery(event_type="bounced"))
    destination.close()
    assert answer.status == 400
    assert "BadRequestException" in answer.detail
    assert "Invalid email address" in answer.detail


@pytest.mark.usefixtures("aws_env")
def test_ses_throttled_passes_retry_after(server: Loopback) -> None:
    error = {"__type": "TooManyRequestsException", "message": "Too many requests"}
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": "TooManyRequestsException",
        "Retry-After": "12",
    }
    server.answer(Reply(429, orjson.dumps(error), headers))
    destination = _ses(server.url, **_aws_keys())
    answer = destination.send(delivery(event_type="bounced"))
    destination.close()
    assert (answer.status, answer.retry_after) == (429, 12.0)
    assert len(server.requests) == 1  # boto3 itself does not retry


@pytest.mark.usefixtures("aws_env")
def test_ses_without_credentials_is_final(server: Loopback) -> None:
    destination = _ses(server.url)
    answer = destination.send(delivery(event_type="bounced"))
    destination.close()
    assert answer.status == 401
    assert "no AWS credentials found" in answer.detail
    assert server.requests == []


@pytest.mark.usefixtures("aws_env")
def test_ses_unreachable_and_hanging(server: Loopback) -> None:
    refused = _ses(f"http://127.0.0.1:{free_port()}", **_aws_keys())
    assert refused.send(delivery(event_type="bounced")) == Answer(
        None, "could not connect to the SES endpoint"
    )
    refused.close()

    server.answer(Reply(200, b"{}", delay=5))
    hanging = _ses(server.url, timeout_seconds=0.5, **_aws_keys())
    assert hanging.send(delivery(event_type="bounced")) == Answer(
        None, "no answer from SES: reading timed out after 0.5 s"
    )
    hanging.close()
