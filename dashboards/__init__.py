"""The Streamlit dashboard: ``mailpulse dashboard`` serves ``dashboards/app.py``."""
