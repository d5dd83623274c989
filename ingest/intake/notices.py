"""What ``mailpulse serve`` says about its setup when it starts.

A receiver that is less strict than it looks must say so where the person starting it reads:
a source in shadow mode, a file of secrets any user can read, rate limits counted per worker.
"""

from __future__ import annotations

import stat
from pathlib import Path

from ingest.intake.receiver import VERDICT_HEADER
from mailpulse.config import Config, redacted_url


def start_notices(config: Config, workers: int) -> list[str]:
    """One line per thing the operator should know; warnings start with ``WARNING:``."""
    lines = [
        f"WARNING: source {name!r} is in SHADOW MODE: requests that fail authentication are "
        f"ACCEPTED and stored, with the verdict in the {VERDICT_HEADER} header kept in "
        "lake/raw; set shadow = false once its credentials verify"
        for name, source in sorted(config.sources.items())
        if source.shadow
    ]
    lines += [
        f"WARNING: {path} holds secrets and every user on this machine can read it "
        f"(mode {mode:04o}); run: chmod o-rwx {path}"
        for path, mode in world_readable(config.secret_files)
    ]
    if config.receiver.read_timeout_seconds:
        lines.append(
            "WARNING: receiver.read_timeout_seconds has no effect: gunicorn has no read deadline; "
            "put deploy/nginx.conf in front (its client_header_timeout and client_body_timeout "
            "bound slow clients) and remove the key"
        )
    if any(source.rate_limit for source in config.sources.values()):
        storage = config.receiver.rate_limit_storage
        if storage == "memory://":
            lines.append(
                f"rate limits are counted by each of the {workers} workers alone, each allowing "
                f"1/{workers} of a source's limit; set receiver.rate_limit_storage to a Redis "
                "URL to share the counts"
                + (
                    " (with the postgres spool, receivers on other hosts count on their own too)"
                    if config.spool.engine == "postgres"
                    else ""
                )
            )
        else:
            lines.append(
                f"rate limits are shared by every worker through {redacted_url(storage)}; "
                f"while it does not answer, each worker allows 1/{workers} of a source's limit"
            )
    return lines


def world_readable(paths: tuple[Path, ...]) -> list[tuple[Path, int]]:
    """The files among ``paths`` that any user may read, with their permission bits."""
    found = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue  # read a moment ago to load the secret; gone now is not this check's news
        if mode & stat.S_IROTH:
            found.append((path, mode))
    return found
