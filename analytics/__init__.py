"""The reading side: the lake through DuckDB, rates as polars frames.

>>> from analytics import open_lake
>>> lake = open_lake("data")          # or open_lake() to use mailpulse.toml
>>> lake.rates(by="campaign")         # a polars DataFrame
>>> lake.sql("SELECT count(*) FROM events")
"""

from analytics.errors import AnalyticsError, BadQuery, LakeNotFound
from analytics.lake import DIMENSIONS, Lake, open_lake

__all__ = ["DIMENSIONS", "AnalyticsError", "BadQuery", "Lake", "LakeNotFound", "open_lake"]
