"""Whether a TCP address can be listened on: asked before a server says it is running."""

from __future__ import annotations

import socket


def bind_error(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be bound now, or None.

    Bound as servers bind, with ``SO_REUSEADDR``, so a connection of a stopped server that is
    still closing does not count as taken.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None
