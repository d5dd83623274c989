"""The durable intake: a queue of accepted requests (:mod:`ingest.spool.queue`).

The receiver appends to it, the flusher claims and acknowledges; the embedded engine is
SQLite (:mod:`ingest.spool.sqlite`).
"""

from ingest.spool.queue import Claim, Spool, open_spool
from ingest.spool.record import SpoolRecord, new_request_id

__all__ = ["Claim", "Spool", "SpoolRecord", "new_request_id", "open_spool"]
