-- The registry's metrics added up from the rollup's totals (message_totals.sql). The filters
-- are messages.sql's, on the day a message was first seen: the totals are used only when the
-- dates asked for start at midnight (UTC), so both select the same messages.
WITH totals AS (SELECT * FROM {totals})
SELECT
    {select}
FROM totals
WHERE ($until IS NULL OR sent_at < $until)
  AND ($since IS NULL OR sent_at >= $since)
  AND ($campaign IS NULL OR campaign = $campaign)
  AND ($source IS NULL OR source = $source)
{grouping}
