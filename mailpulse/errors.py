"""Errors shared by every mailpulse package.

The hierarchy::

    MailpulseError
     +-- ConfigError          the configuration has one or more mistakes
     +-- LakeUnreachable      the lake's storage cannot be listed, read or written now

Each package adds its own subtree in its own ``errors`` module (``ingest.errors``,
``analytics.errors``); the HTTP edge and the CLI edge translate them for people.
"""

from __future__ import annotations


class MailpulseError(Exception):
    """Base class of every error mailpulse raises on purpose."""


class ConfigError(MailpulseError):
    """The configuration cannot be used; ``problems`` holds one sentence per mistake."""

    def __init__(self, problems: list[str], origin: str = "configuration") -> None:
        self.problems = list(problems)
        self.origin = origin
        super().__init__("; ".join(self.problems))

    def lines(self) -> list[str]:
        """One human line per mistake, each naming where the mistake is."""
        return [f"{self.origin}: {problem}" for problem in self.problems]


class LakeUnreachable(MailpulseError):
    """The lake's storage failed (object store down, bucket missing, access refused, disk
    error): a sentence naming the lake and the storage's own reason, never a credential."""
