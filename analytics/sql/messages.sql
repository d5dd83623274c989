-- One row per message: the unit of every rate is the message to one recipient,
-- (message_id, recipient). Each column says what happened to that message; the metric
-- registry (analytics/metrics.py) counts these columns and nothing else.
--
-- A message belongs to the date it was first seen (sent_at, its earliest event), so a date
-- range selects whole messages and adding up date ranges adds up counts. (Which is why the
-- filters apply after grouping: an open on the 10th of a message sent on the 1st must not
-- make that message look sent on the 10th.)
-- Contextual agent rules (v2) are applied here, per message:
--   * a click within {scanner_click_seconds} s of delivery is a security scanner's;
--   * {burst_clicks} or more clicks within {burst_seconds} s are a scanner clicking every link.
-- The state comes from message_state.sql over the events, or from the rollup merged with the
-- files written since (analytics/rollup.py).
WITH per_message AS (SELECT * FROM {state})
SELECT
    *,
    delivered_at IS NOT NULL AND (bounced_at IS NULL OR delivered_at >= bounced_at)
        AS is_delivered,
    bounced_at IS NOT NULL AND (delivered_at IS NULL OR delivered_at < bounced_at)
        AS is_bounced,
    was_dropped AND NOT was_sent AS is_dropped,
    first_human_open_at IS NOT NULL AS human_opened,
    machine_open_events > 0 AS machine_opened,
    last_human_click_at IS NOT NULL
        AND NOT (delivered_at IS NOT NULL
                 AND last_human_click_at < delivered_at + INTERVAL {scanner_click_seconds} SECOND)
        AND NOT (human_clicks >= {burst_clicks}
                 AND last_human_click_at
                     <= first_human_click_at + INTERVAL {burst_seconds} SECOND)
        AS human_clicked,
    unsubscribed_at IS NOT NULL AND (resubscribed_at IS NULL OR resubscribed_at < unsubscribed_at)
        AS is_unsubscribed
FROM per_message
WHERE ($until IS NULL OR sent_at < $until)
  AND ($since IS NULL OR sent_at >= $since)
  AND ($campaign IS NULL OR campaign = $campaign)
  AND ($source IS NULL OR source = $source)
