"""No configured secret leaks: not in a server log line, not in any answer of the hostile suite.

``test_hostile`` runs first (the files run in name order) and fills the session ``recorder``:
every response body it read, the server's whole log (read when its server stopped, at the end
of that module) and every secret it configured, in each form it could leak in: plain, base64,
the password of ``user:pass`` alone and in base64 (which is what ``Authorization: Basic``
carries).
"""

from __future__ import annotations

import base64

import pytest

from tests.security.conftest import Recorder, secret_forms


def _haystacks(recorder: Recorder) -> list[tuple[str, str]]:
    found = [(f"log #{i}", log) for i, log in enumerate(recorder.logs)]
    found += [
        (f"answer #{i} ({e.source[:40]} {e.status})", e.body.decode("utf-8", "replace"))
        for i, e in enumerate(recorder.exchanges)
    ]
    return found


@pytest.fixture
def record(recorder: Recorder) -> Recorder:
    if not recorder.exchanges or not recorder.logs:
        pytest.skip("run together with test_hostile.py (pytest tests/security): nothing recorded")
    return recorder


def test_secret_forms_cover_what_a_leak_looks_like() -> None:
    forms = secret_forms("mailjet:s3cret-passw0rd")
    assert {"mailjet:s3cret-passw0rd", "s3cret-passw0rd"} <= forms
    assert base64.b64encode(b"mailjet:s3cret-passw0rd").decode() in forms
    assert base64.b64encode(b"s3cret-passw0rd").decode() in forms


def test_the_recording_is_complete(record: Recorder) -> None:
    assert len(record.exchanges) >= 200
    assert any(e.status == 401 for e in record.exchanges)
    assert any(e.status == 200 for e in record.exchanges)
    assert record.secrets, "no secrets were collected: the check would prove nothing"
    # The log is real: the server wrote refusals while the hostile suite ran.
    assert "webhook refused" in "".join(record.logs)
    assert "authentication failed" in "".join(record.logs)
    assert any("mailpulse_" in log for log in record.logs), "/metrics was not recorded"


def test_no_secret_in_logs_or_answers(record: Recorder) -> None:
    leaks = [
        (where, secret[:4] + "...")
        for where, text in _haystacks(record)
        for secret in record.secrets
        if secret in text
    ]
    assert leaks == []


def test_no_basic_credential_in_logs_or_answers(record: Recorder) -> None:
    basics = {
        "Basic " + base64.b64encode(secret.encode()).decode()
        for secret in record.secrets
        if ":" in secret
    }
    for where, text in _haystacks(record):
        assert not any(basic in text for basic in basics), where
