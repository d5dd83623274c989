"""The mailpulse dashboard: ``mailpulse dashboard`` runs ``streamlit run dashboards/app.py``.

Five pages over the analytics package (see :mod:`dashboards.data`); the sidebar filters live
in the URL, so a view can be shared as a link.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# Streamlit runs this file as a script: make the project importable from any working folder.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAGES = ROOT / "dashboards" / "views"

st.set_page_config(page_title="mailpulse", page_icon=":envelope:", layout="wide")
OVERVIEW = st.Page(PAGES / "overview.py", title="Overview", url_path="overview")


def _start() -> None:
    """The root URL: Streamlit serves its default page there and at no other path, so the
    default is this redirect and every page has its own URL (``/overview`` too), with the
    link's filters kept."""
    st.switch_page(OVERVIEW, query_params=st.query_params.to_dict())


navigation = st.navigation(
    [
        st.Page(_start, title="Start", url_path="start", default=True, visibility="hidden"),
        OVERVIEW,
        st.Page(PAGES / "campaigns.py", title="Campaigns", url_path="campaigns"),
        st.Page(PAGES / "deliverability.py", title="Deliverability", url_path="deliverability"),
        st.Page(PAGES / "suppressions.py", title="Suppressions", url_path="suppressions"),
        st.Page(PAGES / "health.py", title="Ingestion health", url_path="health"),
    ]
)
navigation.run()
