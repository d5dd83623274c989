"""The end of every test run: no configured secret in anything the run produced.

A pytest plugin (``tests/conftest.py`` loads it). When the session finishes, whichever tests
ran (``-k``, one file, any order), every server log, every ``mailpulse`` command's output and
every HTTP answer recorded in :data:`tests.leaks.RECORD` is searched for every credential of
every server the run started, in every form a secret could leak in. A find fails the run
(exit status 1) with one line per place. The hostile-input suite keeps its own, stricter
record (raw sockets included): ``tests/security/test_no_secret_leaks.py``.
"""

from __future__ import annotations

import pytest

from tests.leaks import RECORD


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a recorded secret appears in a recorded log or output."""
    found = RECORD.leaks()
    if not found:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"secret {prefix} leaked into {where}" for where, prefix in found[:20]]
    if len(found) > len(lines):
        lines.append(f"... and {len(found) - len(lines)} more")
    if reporter is not None:
        reporter.write_sep("=", "a configured secret leaked: the run fails", red=True)
        for line in lines:
            reporter.write_line(line, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
