"""A spy on the spool's syncs, whichever call makes them: ``fdatasync``, or a ``pwritev``
with ``RWF_DSYNC``. The real calls still run."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

_RWF_DSYNC = getattr(os, "RWF_DSYNC", 0)


class SyncSpy:
    """Records each ``fdatasync`` and ``pwritev`` in ``calls`` (``"fdatasync"``,
    ``"pwritev+dsync"`` or ``"pwritev"``); ``hold`` makes each sync wait for it first (a disk
    that stopped answering)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.hold: threading.Event | None = None
        real_fdatasync, real_pwritev = os.fdatasync, os.pwritev

        def fdatasync(fd: int) -> None:
            self._called("fdatasync", sync=True)
            real_fdatasync(fd)

        def pwritev(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
            synced = bool(flags & _RWF_DSYNC)
            self._called("pwritev+dsync" if synced else "pwritev", sync=synced)
            return real_pwritev(fd, buffers, offset, flags)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "pwritev", pwritev)

    @property
    def syncs(self) -> int:
        """How many calls so far made data durable."""
        return sum(call != "pwritev" for call in self.calls)

    def _called(self, name: str, *, sync: bool) -> None:
        self.calls.append(name)
        if sync and self.hold is not None:
            self.hold.wait(5)
