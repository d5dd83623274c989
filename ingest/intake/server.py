"""``mailpulse serve``: gunicorn workers plus the background flusher and the actions, drained
on SIGTERM.

The serve process is a small supervisor. It starts gunicorn (``python -m ingest.intake.server``) as
a child and runs the flusher in a thread of its own, and the actions (:mod:`ingest.actions.runner`)
in two more. On SIGTERM or SIGINT it asks gunicorn to
stop gracefully (in-flight requests finish and are answered), waits for it, then runs one
last flush and exits. On SIGHUP it reads the configuration again and, when it is valid, has
gunicorn replace its workers gracefully, so new credentials apply without a dropped request;
an invalid file is reported and the running workers keep the old configuration. Everything
sits in one process group, so ``kill -9 -<pgid>`` takes all of it down at once, which is what
the crash tests do. Gunicorn gets a death signal for when this process dies, so killing
only ``serve`` (``kill -9 <pid>``) never leaves gunicorn serving without a flusher.

Prometheus's multiprocess files are memory-mapped; one on a full disk would kill a worker
with SIGBUS when it touches a page the filesystem cannot back. They live in a private
directory in memory (``/dev/shm`` where it exists), never on the data disk, and are removed
when ``serve`` exits.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from ingest.actions.runner import ActionsRunner
from ingest.errors import CannotServe
from ingest.flush.flusher import Flusher
from ingest.providers import PROVIDERS
from mailpulse.config import Config, load_config
from mailpulse.errors import MailpulseError
from mailpulse.ports import bind_error

log = logging.getLogger(__name__)

GRACEFUL_TIMEOUT = 30


def check_can_serve(config: Config, host: str, port: int) -> None:
    """Raise :class:`CannotServe` when ``host:port`` is taken or a data directory cannot be
    written: said in one line before anything claims to be receiving."""
    for directory in (config.data_dir, config.spool_dir, config.state_dir):
        problem = _unwritable(directory)
        if problem is not None:
            raise CannotServe(f"cannot write to {directory}: {problem}")
    exc = bind_error(host, port)  # as gunicorn binds
    if exc is not None:
        reason = "in use" if exc.errno == errno.EADDRINUSE else os.strerror(exc.errno or 0)
        raise CannotServe(f"cannot listen on {host}:{port}: the address is {reason}") from exc


def _unwritable(directory: Path) -> str | None:
    """Why ``directory`` cannot hold new files (created when missing), or None."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _metrics_directory() -> Path:
    """A fresh private directory for the workers' multiprocess metrics, in memory.

    Its name carries this process's id, so one left behind by a ``serve`` that was killed
    (no chance to remove it) is recognised and removed by the next start.
    """
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    stale = parent.glob(f"{_METRICS_PREFIX}*-") if Path("/proc/self").exists() else ()
    for old in stale:
        pid = old.name.removeprefix(_METRICS_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    prefix = f"{_METRICS_PREFIX}{os.getpid()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, suffix="-", dir=parent))


_METRICS_PREFIX = "mailpulse-metrics-"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it (a graceful gunicorn stop) when ``serve`` dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8025,
    workers: int | None = None,
    threads: int | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Run the receiver and the flusher until a signal stops them; the exit status."""
    command = [
        *(sys.executable, "-m", "ingest.intake.server"),
        *("--bind", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"),
        *("--workers", str(workers or config.receiver.workers)),
        *("--threads", str(threads or config.receiver.threads)),
    ]
    if certfile and keyfile:
        command += ["--certfile", certfile, "--keyfile", keyfile]
    metrics_dir = _metrics_directory()
    try:
        return _run(config, command, _child_environment(config, metrics_dir), on_ready)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _child_environment(config: Config, metrics_dir: Path) -> dict[str, str]:
    """The gunicorn child's environment: where the metrics go and how to find the config."""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    if config.is_demo:
        env["MAILPULSE_DATA_DIR"] = str(config.data_dir.resolve())
        env.pop("MAILPULSE_CONFIG", None)
    else:
        env["MAILPULSE_CONFIG"] = str(Path(config.origin).resolve())
    return env


def _run(
    config: Config,
    command: list[str],
    env: dict[str, str],
    on_ready: Callable[[], None] | None,
) -> int:
    """Start gunicorn (dying with this process), run the flusher, relay SIGTERM and SIGHUP."""
    gunicorn = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)

    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        # Only forward: the flusher's last pass must come after gunicorn has answered (and so
        # spooled) every in-flight request, which is when gunicorn.wait() below returns.
        if gunicorn.poll() is None:
            gunicorn.send_signal(signal.SIGTERM)  # graceful: finish in-flight requests

    actions = ActionsRunner(config)

    def _reload(_signum: int, _frame: Any) -> None:
        # A worker that cannot load its config would stop gunicorn altogether: check first.
        try:
            fresh = load_config(None if config.is_demo else config.origin, providers=PROVIDERS)
        except MailpulseError as error:
            log.error("configuration not reloaded: %s", error)
            return
        if gunicorn.poll() is None:
            log.warning("configuration reloaded: replacing the workers")
            gunicorn.send_signal(signal.SIGHUP)
        actions.reload(fresh)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _reload)
    flusher = Flusher(config)
    thread = threading.Thread(
        target=flusher.run_forever,
        args=(stop, config.receiver.flush_interval_seconds),
        name="flusher",
        daemon=True,
    )
    thread.start()
    actions.start()
    if on_ready is not None:
        on_ready()
    status = gunicorn.wait()
    stop.set()  # gunicorn is gone: flush what it stored, then leave
    thread.join()
    actions.stop()  # match what it stored last; what is not delivered waits in the outbox
    return 0 if status in (0, -signal.SIGTERM) else status


class _GunicornApplication(BaseApplication):  # type: ignore[misc]
    """Gunicorn configured in code, serving :func:`ingest.create_app`."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from ingest.intake.app import create_app
        from ingest.logs import configure

        configure()
        return create_app(load_config(providers=PROVIDERS), workers=self.cfg.workers)


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the gunicorn child (``python -m ingest.intake.server``)."""
    parser = argparse.ArgumentParser(prog="python -m ingest.intake.server")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {
        "bind": args.bind,
        "workers": args.workers,
        # Threads let one worker's concurrent requests share a single fsync (group commit).
        "worker_class": "gthread",
        "threads": args.threads,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "timeout": 60,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "child_exit": _child_exit,
    }
    if args.certfile:
        options.update(certfile=args.certfile, keyfile=args.keyfile)
    _GunicornApplication(options).run()


if __name__ == "__main__":
    main()
