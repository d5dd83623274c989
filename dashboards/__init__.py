"""The Streamlit dashboard (pages arrive with the dashboard work; see README)."""
