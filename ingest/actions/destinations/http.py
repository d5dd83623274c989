"""The HTTP plumbing every HTTP destination shares: one session per thread, answers, failures.

A destination sends one request per delivery and reports an :class:`Answer`: the status, the
start of the body and the ``Retry-After`` it asked for, or, when no answer came, one sentence
saying why (timed out, refused, the host did not resolve). Nothing here retries: the
dispatcher does. No URL, header value or exception text reaches a detail, since a URL may be
the secret (a Slack incoming webhook) and requests' messages name the URL.
"""

from __future__ import annotations

import base64
import email.utils
import math
import os
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3.exceptions

from ingest.actions.destinations.base import DETAIL_CHARS, Answer, Delivery
from mailpulse import __version__
from mailpulse.actions_config import ActionConfig

USER_AGENT = f"mailpulse/{__version__}"
#: How much of an answer's body is read; the rest is left unread (only the start is kept).
MAX_BODY_BYTES = 64 * 1024
_REDACTED = "***"
#: The answer for an event with no address to suppress: final, no retry will add one.
NO_RECIPIENT = Answer(422, "the event has no recipient address")


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer as it came: the status, the body (its start) and the headers."""

    status: int
    text: str
    headers: Mapping[str, str]

    def answer(self) -> Answer:
        """The :class:`Answer` for this reply: status, start of the body, ``Retry-After``."""
        return Answer(
            self.status,
            self.text.strip()[:DETAIL_CHARS],
            parse_retry_after(self.headers.get("Retry-After")),
        )


#: Turns a reply into the answer; destinations whose APIs say more than the status use it.
Judge = Callable[[Reply], Answer]


class HttpClient:
    """Sends requests for one action: a ``requests.Session`` per thread, reused across calls.

    Sessions are not documented as thread-safe, so each sending thread gets its own (and
    keeps its connections alive); :meth:`close` closes every session any thread opened.
    """

    def __init__(self, action: ActionConfig, *, extra_secrets: Iterable[str] = ()) -> None:
        self.timeout = action.timeout_seconds
        self._secrets = secret_values(action, extra_secrets)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []
        self._proxies: dict[str, dict[str, str]] = {}  # per URL (dict ops are atomic)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            # The environment is read once per URL (see _proxies_for), not on every request:
            # requests otherwise looks for ~/.netrc and walks the proxy variables for each
            # send, a sixth of a delivery's CPU. The proxies, no_proxy and CA bundle the
            # environment names still apply.
            session.trust_env = False
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                session.verify = bundle
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _proxies_for(self, url: str) -> dict[str, str]:
        """The proxies the environment gives ``url`` (honouring no_proxy), read once."""
        found = self._proxies.get(url)
        if found is None:
            found = self._proxies[url] = requests.utils.get_environ_proxies(url)
        return found

    def post(self, url: str, **kwargs: Any) -> Answer:
        """POST ``url``; see :meth:`request`."""
        return self.request("POST", url, **kwargs)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        judge: Judge | None = None,
    ) -> Answer:
        """Send one request and report the answer; never raises for a failed request.

        ``judge`` turns the reply into the answer (default: :meth:`Reply.answer`). Redirects
        are not followed: a moved endpoint is a failure to fix, and following one would
        carry the credential headers to wherever the redirect points.
        """
        try:
            with self._session().request(
                method,
                url,
                proxies=self._proxies_for(url),
                headers=dict(headers or {}),
                data=data,
                auth=auth,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,  # read at most MAX_BODY_BYTES of the body
            ) as response:
                reply = Reply(response.status_code, _read_text(response), response.headers)
        except (requests.RequestException, ValueError) as exc:
            # ValueError: a header value that cannot be encoded, an unparsable URL.
            return Answer(None, describe_failure(exc, self.timeout))
        answer = (judge or Reply.answer)(reply)
        return Answer(answer.status, self.redact(answer.detail), answer.retry_after)

    def redact(self, text: str) -> str:
        """``text`` with every secret of the action replaced by ``***``, in case it echoes one."""
        return redact(text, self._secrets)

    def close(self) -> None:
        """Close every session (and its connections) any thread opened."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()


def recipient_of(delivery: Delivery) -> str | None:
    """The event's recipient address, or None when it has none."""
    recipient = delivery.event.get("recipient")
    return recipient.strip() if isinstance(recipient, str) and recipient.strip() else None


def secret_values(action: ActionConfig, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Every secret of ``action`` (and ``extra``) in the forms an answer could echo it in."""
    values = [secret.reveal() for secret in action.secrets.values()]
    values += [secret.reveal() for secret in action.headers.values()]
    values += extra
    values += [part for value in values for part in _url_parts(value)]
    forms = {form for value in values for form in (value, _b64(value))}
    # Short values would blank out ordinary words; the longest go first, so a secret that
    # contains another is replaced whole.
    return tuple(sorted((form for form in forms if len(form) >= 8), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (see :func:`secret_values`) replaced by ``***``."""
    for value in secrets:
        text = text.replace(value, _REDACTED)
    return text


def _url_parts(value: str) -> list[str]:
    """The parts of a secret URL an answer could echo alone: path, long segments, query."""
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return []
    if not (parts.scheme and parts.netloc):
        return []
    long_segments = [segment for segment in parts.path.split("/") if len(segment) >= 16]
    return [parts.path, parts.query, parts.password or "", *long_segments]


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _read_text(response: requests.Response) -> str:
    """The start of the body as text (the declared charset, else UTF-8; bad bytes replaced)."""
    body = bytearray()
    for chunk in response.iter_content(8192):
        body += chunk
        if len(body) >= MAX_BODY_BYTES:
            break
    return bytes(body[:MAX_BODY_BYTES]).decode(response.encoding or "utf-8", errors="replace")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP-date), >= 0.

    A date in the past gives 0; a value that is neither gives None.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def describe_failure(exc: BaseException, timeout: float) -> str:
    """One sentence saying why no answer came, naming no URL and no header.

    requests wraps urllib3's errors, which wrap the socket's: the sentence comes from the
    most telling error found down that chain.
    """
    causes = list(_chain(exc))
    seconds = f"{timeout:g} s"
    if any(isinstance(c, requests.ConnectTimeout) for c in causes):
        return f"connecting timed out after {seconds}"
    if any(
        isinstance(c, requests.ReadTimeout | urllib3.exceptions.ReadTimeoutError) for c in causes
    ):
        return f"no answer: reading timed out after {seconds}"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror | urllib3.exceptions.NameResolutionError) for c in causes):
        return "the host name did not resolve"
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the TLS certificate was not accepted ({cause.verify_message})"
    if any(isinstance(c, ssl.SSLError | requests.exceptions.SSLError) for c in causes):
        return "the TLS handshake failed"
    if any(isinstance(c, TimeoutError | urllib3.exceptions.TimeoutError) for c in causes):
        return f"timed out after {seconds}"
    if any(isinstance(c, ConnectionResetError | BrokenPipeError) for c in causes):
        return "the connection was reset before a full answer came"
    if any(isinstance(c, requests.exceptions.ChunkedEncodingError) for c in causes):
        return "the connection closed before a full answer came"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return "the URL is not valid"
    return f"the request failed ({type(exc).__name__})"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every error it wraps (causes, contexts, urllib3 reasons, exception args)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        wrapped += list(current.args)
        stack += [item for item in wrapped if isinstance(item, BaseException)]
