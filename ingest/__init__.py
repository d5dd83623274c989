"""The receiving side: the Flask receiver, the durable spool and the flusher into the lake."""

from ingest.intake.app import create_app

__all__ = ["create_app"]
