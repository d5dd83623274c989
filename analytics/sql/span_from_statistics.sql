-- The span of occurred_at from the events files' Parquet statistics (their footers), without
-- reading the events: the first and last time, and whether every row group had statistics
-- (when one has none, the span must come from the events themselves).
SELECT
    min(CAST(stats_min_value AS TIMESTAMPTZ)) AS first,
    max(CAST(stats_max_value AS TIMESTAMPTZ)) AS last,
    coalesce(bool_and(stats_min_value IS NOT NULL AND stats_max_value IS NOT NULL), false)
        AS complete
FROM parquet_metadata([{files}])
WHERE path_in_schema = 'occurred_at'
