"""No configured secret in anything the whole test run produced (runs last: file name order).

Every server log, every ``mailpulse`` command's output and every HTTP answer read during
the run, against every credential of every server the run started, in every form a secret
could leak in. The hostile-input suite keeps its own, stricter record (raw sockets included):
``tests/security/test_no_secret_leaks.py``.
"""

from __future__ import annotations

import pytest

from tests.leaks import RECORD


def test_no_secret_anywhere_in_the_run() -> None:
    if not RECORD.logs:
        pytest.skip("run with the whole suite: no server was started before this test")
    assert RECORD.secrets, "servers ran but no secret was recorded: the check would prove nothing"
    haystacks = [(str(path), path.read_text(errors="replace")) for path in RECORD.logs]
    haystacks += RECORD.outputs
    assert len(RECORD.outputs) > 50, "too few answers and outputs were recorded"
    # The record is real: refusals with their reasons are in it.
    assert any('"bad_signature"' in text for _, text in haystacks)
    leaks = sorted(
        {
            (where, secret[:4] + "...")
            for where, text in haystacks
            for secret in RECORD.secrets
            if secret in text
        }
    )
    assert leaks == [], leaks[:20]
