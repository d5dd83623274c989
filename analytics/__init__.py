"""The reading side: the lake through DuckDB, every metric from one registry, polars out.

>>> from analytics import open_lake
>>> lake = open_lake("data")                    # or open_lake() to use mailpulse.toml
>>> lake.metrics(by="campaign")                 # every registry metric per campaign
>>> lake.metrics(by="date", period="week", metrics=["delivered", "bounce_rate"])
>>> lake.sql("SELECT event_type, count(*) FROM events GROUP BY ALL")
"""

from analytics.errors import AnalyticsError, BadQuery, LakeNotFound
from analytics.lake import Lake, open_lake
from analytics.metrics import HEADLINE, METRICS, REGISTRY, Metric
from analytics.queries import DIMENSIONS, PERIODS

__all__ = [
    "DIMENSIONS",
    "HEADLINE",
    "METRICS",
    "PERIODS",
    "REGISTRY",
    "AnalyticsError",
    "BadQuery",
    "Lake",
    "LakeNotFound",
    "Metric",
    "open_lake",
]
