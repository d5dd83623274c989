"""The receive benchmark's baseline: a Flask endpoint that reads the body and does nothing else.

It answers ``POST /webhooks/<source>`` like the real receiver does on success (200,
``{"status": "stored"}``) but verifies nothing and writes nothing, so the ratio against it
shows what authentication plus the durable spool cost on top of Flask and gunicorn.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request


def create_app() -> Flask:
    """A Flask app with the receiver's URL shape and none of its work."""
    app = Flask("mailpulse-bench-noop")

    @app.post("/webhooks/<source>")
    def receive(source: str) -> Response:
        request.get_data(cache=False)  # read the body, as any real endpoint must
        return jsonify(status="stored")

    @app.get("/readyz")
    def readyz() -> Response:
        return jsonify(status="ready")

    return app
