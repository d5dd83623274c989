"""Errors of the reading side (``analytics``).

The hierarchy::

    MailpulseError                (mailpulse.errors)
     +-- AnalyticsError
          +-- LakeNotFound        the data directory or lake does not exist
          +-- BadQuery            an unknown dimension, a bad date or filter
"""

from __future__ import annotations

from mailpulse.errors import MailpulseError


class AnalyticsError(MailpulseError):
    """Base class of the reading side's errors."""


class LakeNotFound(AnalyticsError):
    """There is no lake where one was expected."""


class BadQuery(AnalyticsError):
    """A report was asked for with an unknown dimension or an invalid filter."""
