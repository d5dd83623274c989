"""mailpulse: email-provider webhooks in, a deduplicated Parquet lake and trusted rates out.

The command line lives in :mod:`mailpulse.cli`; configuration in :mod:`mailpulse.config`.
The receiver and flusher are in :mod:`ingest`, the reading side in :mod:`analytics`.
"""

__version__ = "0.1.0"
