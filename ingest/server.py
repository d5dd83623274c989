"""``mailpulse serve``: gunicorn workers plus the background flusher, drained on SIGTERM.

The serve process is a small supervisor. It starts gunicorn (``python -m ingest.server``) as
a child and runs the flusher in a thread of its own. On SIGTERM or SIGINT it asks gunicorn to
stop gracefully (in-flight requests finish and are answered), waits for it, then runs one
last flush and exits. On SIGHUP it reads the configuration again and, when it is valid, has
gunicorn replace its workers gracefully, so new credentials apply without a dropped request;
an invalid file is reported and the running workers keep the old configuration. Everything
sits in one process group, so ``kill -9 -<pgid>`` takes all of it down at once, which is what
the crash tests do.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from ingest.flusher import Flusher
from mailpulse.config import Config, load_config
from mailpulse.errors import MailpulseError

log = logging.getLogger(__name__)

GRACEFUL_TIMEOUT = 30


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
    metrics_dir = config.state_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # counters restart with the server
    metrics_dir.mkdir(parents=True)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    if config.is_demo:
        env["MAILPULSE_DATA_DIR"] = str(config.data_dir.resolve())
        env.pop("MAILPULSE_CONFIG", None)
    else:
        env["MAILPULSE_CONFIG"] = str(Path(config.origin).resolve())
    command = [
        sys.executable,
        "-m",
        "ingest.server",
        "--bind",
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "--workers",
        str(workers or config.receiver.workers),
        "--threads",
        str(threads or config.receiver.threads),
    ]
    if certfile and keyfile:
        command += ["--certfile", certfile, "--keyfile", keyfile]
    gunicorn = subprocess.Popen(command, env=env)

    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        # Only forward: the flusher's last pass must come after gunicorn has answered (and so
        # spooled) every in-flight request, which is when gunicorn.wait() below returns.
        if gunicorn.poll() is None:
            gunicorn.send_signal(signal.SIGTERM)  # graceful: finish in-flight requests

    def _reload(_signum: int, _frame: Any) -> None:
        # A worker that cannot load its config would stop gunicorn altogether: check first.
        try:
            load_config(None if config.is_demo else config.origin)
        except MailpulseError as error:
            log.error("configuration not reloaded: %s", error)
            return
        if gunicorn.poll() is None:
            log.warning("configuration reloaded: replacing the workers")
            gunicorn.send_signal(signal.SIGHUP)

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
    if on_ready is not None:
        on_ready()
    status = gunicorn.wait()
    stop.set()  # gunicorn is gone: flush what it stored, then leave
    thread.join()
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
        from ingest.app import create_app
        from ingest.logs import configure

        configure()
        return create_app(load_config(), workers=self.cfg.workers)


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the gunicorn child (``python -m ingest.server``)."""
    parser = argparse.ArgumentParser(prog="python -m ingest.server")
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
