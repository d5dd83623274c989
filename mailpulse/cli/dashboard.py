"""``mailpulse dashboard``: the Streamlit dashboard over this configuration's lake."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import click

from mailpulse.cli import cli
from mailpulse.cli.common import config_option, load

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


@cli.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--receiver-url",
    default=None,
    help="The receiver whose /metrics shows signature failures [http://127.0.0.1:8025].",
)
def dashboard(config_path: str | None, host: str, port: int, receiver_url: str | None) -> None:
    """Serve the dashboard (campaigns, deliverability, suppressions, ingestion health).

    \b
    Example:
        mailpulse dashboard --config /etc/mailpulse.toml --port 8501
    """
    config = load(config_path)  # fail here, in one line, rather than inside the app
    env = dict(os.environ)
    if config_path:
        env["MAILPULSE_CONFIG"] = str(Path(config_path).resolve())
    env["MAILPULSE_DATA_DIR"] = str(Path(config.data_dir).resolve())
    if receiver_url:
        env["MAILPULSE_RECEIVER_URL"] = receiver_url
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless=true",
        f"--server.address={host}",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
    ]
    click.echo(f"mailpulse: dashboard on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the dashboard, not an error
        process = subprocess.Popen(command, env=env)
        try:
            returncode = process.wait()
        except KeyboardInterrupt:
            process.terminate()
            returncode = process.wait()
        if returncode not in (0, -15):
            raise SystemExit(returncode)
