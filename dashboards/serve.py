"""Start Streamlit on the dashboard with the heavy libraries already imported.

Streamlit runs a page's script only when a browser asks for it, so the first visitor would
otherwise wait for Altair (its JSON-schema validator compiles a grammar on import), polars,
DuckDB and the analytics package to load: about two seconds. Importing them here, before
the server starts, moves that wait to the start of ``mailpulse dashboard``. Only modules
without Streamlit caches are imported early: ``st.cache_data`` functions are made inside the
running server, as usual.

    python -m dashboards.serve dashboards/app.py --server.headless=true ...
"""

from __future__ import annotations

import importlib
import sys

from streamlit.web import cli as streamlit_cli

PRELOAD = (
    "altair",
    "duckdb",
    "polars",
    "prometheus_client.parser",
    "requests",
    "analytics.activity",
    "analytics.lake",
    "analytics.suppression",
    "analytics.suppression_table",
    "ingest.flush.flusher",
    "ingest.metrics",
    "mailpulse.config",
)


def main(arguments: list[str]) -> None:
    """``streamlit run <arguments>``, after importing :data:`PRELOAD`."""
    for name in PRELOAD:
        importlib.import_module(name)
    sys.argv = ["streamlit", "run", *arguments]
    streamlit_cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
