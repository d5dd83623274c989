"""One accepted request as the spool keeps it, whatever the engine."""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One accepted request: where and when it came from, and its body exactly as received."""

    request_id: str
    source: str
    received_at: int  # epoch microseconds
    remote_addr: str
    method: str
    url: str
    content_type: str
    headers: dict[str, str]  # lower-cased, credentials removed
    body: bytes

    def header(self) -> bytes:
        """Everything but the body, as JSON (the body is kept apart, byte for byte)."""
        return orjson.dumps(
            {
                "id": self.request_id,
                "source": self.source,
                "received_at": self.received_at,
                "remote_addr": self.remote_addr,
                "method": self.method,
                "url": self.url,
                "content_type": self.content_type,
                "headers": self.headers,
            }
        )

    def __reduce__(self) -> tuple[type[SpoolRecord], tuple[Any, ...]]:
        # Pickled as the constructor's arguments: the flusher sends thousands of records to
        # its workers per batch, and a slotted dataclass's default pickling looks up the
        # class's fields again for every one of them.
        return SpoolRecord, _constructor_arguments(self)

    @classmethod
    def decode(cls, header: bytes, body: bytes) -> SpoolRecord:
        """Rebuild a record from its :meth:`header` and body."""
        fields: dict[str, Any] = orjson.loads(header)
        return cls(
            request_id=fields["id"],
            source=fields["source"],
            received_at=fields["received_at"],
            remote_addr=fields["remote_addr"],
            method=fields["method"],
            url=fields["url"],
            content_type=fields["content_type"],
            headers=fields["headers"],
            body=body,
        )


# A record's fields in the constructor's order, read in one call; derived from the class, so
# a field added to it is pickled too.
_constructor_arguments = attrgetter(*(f.name for f in dataclasses.fields(SpoolRecord)))


def new_request_id() -> str:
    """A unique, roughly time-ordered request id.

    The random part only has to differ between requests of the same nanosecond, so it comes
    from :mod:`random` (reseeded in every forked worker), not the operating system: a call to
    ``os.urandom`` would let another thread take the interpreter lock in the middle of a request.
    """
    return f"{time.time_ns():x}-{random.getrandbits(48):012x}"
