-- Per-dimension delivery and engagement rates (DESIGN.md, "Metrics: one definition each").
-- The unit is the message to one recipient: (message_id, recipient). Two stages: first one row
-- per message with what happened to it, then counts per dimension value.
--   delivered          messages with a delivered event
--   bounced            messages with a bounce and no later delivery
--   bounce_rate        bounced / (delivered + bounced)
--   unique_open_rate   delivered messages with a human open / delivered
--   unique_click_rate  delivered messages with a human click / delivered
-- {dimension} is replaced by a vetted SQL expression; filters are bound parameters.
WITH messages AS (
    SELECT
        {dimension} AS dimension,
        max(CASE WHEN event_type = 'delivered' THEN occurred_at END) AS delivered_at,
        max(CASE WHEN event_type = 'bounced' THEN occurred_at END) AS bounced_at,
        bool_or(event_type = 'opened' AND agent = 'human') AS human_open,
        bool_or(event_type = 'clicked' AND agent = 'human') AS human_click
    FROM events
    WHERE ($since IS NULL OR occurred_at >= $since)
      AND ($until IS NULL OR occurred_at < $until)
      AND ($campaign IS NULL OR campaign = $campaign)
    GROUP BY 1, coalesce(message_id, ''), recipient
),
counted AS (
    SELECT
        dimension,
        count(delivered_at) AS delivered,
        count(*) FILTER (
            WHERE bounced_at IS NOT NULL AND (delivered_at IS NULL OR delivered_at < bounced_at)
        ) AS bounced,
        count(*) FILTER (WHERE delivered_at IS NOT NULL AND human_open) AS opened,
        count(*) FILTER (WHERE delivered_at IS NOT NULL AND human_click) AS clicked
    FROM messages
    GROUP BY dimension
)
SELECT
    dimension,
    delivered,
    bounced,
    CASE WHEN delivered + bounced > 0 THEN bounced / (delivered + bounced) END AS bounce_rate,
    CASE WHEN delivered > 0 THEN opened / delivered END AS unique_open_rate,
    CASE WHEN delivered > 0 THEN clicked / delivered END AS unique_click_rate
FROM counted
ORDER BY dimension NULLS LAST
