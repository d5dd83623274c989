"""The receiving side: the Flask receiver, the durable spool and the flusher into the lake."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.intake.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """Load the Flask app only when asked for (PEP 562): the flusher and its worker processes
    import ``ingest`` too, and should not pay for Flask and the receiver on every start."""
    if name == "create_app":
        from ingest.intake.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
