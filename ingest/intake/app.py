"""The Flask application factory for the receiver."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from ingest import metrics
from ingest.intake import http_errors, receiver
from ingest.intake.runtime import build_state
from ingest.providers import PROVIDERS
from mailpulse.config import Config, load_config


def create_app(
    config: Config | None = None, *, clock: Callable[[], float] | None = None, workers: int = 1
) -> Flask:
    """Build a receiver for ``config`` (found the usual way when omitted).

    ``clock`` returns unix seconds; tests pass a fixed one to check timestamp tolerance.
    ``workers`` is how many processes serve the same config (gunicorn's worker count).
    """
    config = config if config is not None else load_config(providers=PROVIDERS)
    app = Flask("mailpulse")
    app.config["MAILPULSE"] = config
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # An ESP never follows redirects: "//" in a path is a 404, not a 308 to another URL.
    app.url_map.merge_slashes = False
    state = build_state(config, clock, workers)
    app.extensions["mailpulse"] = state
    hops = config.receiver.trusted_proxy_hops
    if hops:
        # Only the last ``hops`` X-Forwarded-For (and -Proto) entries were written by proxies
        # we trust; the scheme is the one the ESP used to reach the first of them.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.register_blueprint(receiver.bp)
    http_errors.register(app)

    @app.get("/metrics")
    def _metrics() -> Response:
        body = metrics.render(state.spool, config.state_dir)
        return Response(body, mimetype="text/plain; version=0.0.4")

    return app
