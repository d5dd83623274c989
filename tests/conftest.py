"""Fixtures: a generic-source config, an in-process app, a signed-request builder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters
from flask import Flask
from flask.testing import FlaskClient

from ingest import create_app
from mailpulse.config import Config
from tests import leaks, postgres, s3
from tests.helpers import new_secret, parse_config

# After the last test, whichever ran: no configured secret in any log, output or answer.
pytest_plugins = ["tests.leak_check"]


@pytest.fixture(scope="session", autouse=True)
def record_answers() -> Iterator[None]:
    """Keep every HTTP answer the run reads with ``requests``, for the secret-leak check."""
    original = requests.adapters.HTTPAdapter.send

    def send(self: requests.adapters.HTTPAdapter, request: Any, **kwargs: Any) -> Any:
        response = original(self, request, **kwargs)
        if not kwargs.get("stream"):
            leaks.RECORD.outputs.append((f"{request.method} {request.url}"[:80], response.text))
        return response

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]
    yield
    requests.adapters.HTTPAdapter.send = original  # type: ignore[method-assign]


@pytest.fixture
def secret() -> str:
    """A generated secret for the ``in_house`` source."""
    return new_secret()


@pytest.fixture
def make_config(tmp_path: Path, secret: str) -> Any:
    """Build a validated config in ``tmp_path``; keyword arguments patch the document."""

    def build(**overrides: Any) -> Config:
        document: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "sources": {"in_house": {"provider": "generic", "secret": secret}},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(document.get(key), dict):
                document[key] = {**document[key], **value}
            else:
                document[key] = value
        return parse_config(document, env={})

    return build


@pytest.fixture
def config(make_config: Any) -> Config:
    """The default test config: one generic source ``in_house``."""
    built: Config = make_config()
    return built


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    """An in-process receiver for ``config``."""
    application = create_app(config)
    yield application
    application.extensions["mailpulse"].spool.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of ``app``."""
    return app.test_client()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[s3.S3Server]:
    """One S3-compatible server (moto's) for the whole run, started on first use."""
    with s3.server() as running:
        yield running


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[postgres.Cluster]:
    """One PostgreSQL server for the whole run, started on first use."""
    with postgres.cluster() as running:
        yield running


@pytest.fixture
def pg_url(pg_cluster: postgres.Cluster) -> str:
    """A fresh, empty database of that server."""
    return pg_cluster.new_database()
