-- Merge per-message states (message_state.sql) of the same message into one row: each
-- column with the aggregate that combines its own kind (min of mins, sum of counts, ...).
-- Keep it column for column in step with message_state.sql: tests compare both paths.
SELECT
    message_id,
    recipient,
    any_value(recipient_domain) AS recipient_domain,
    max(campaign) AS campaign,
    max(provider) AS provider,
    max(source) AS source,
    min(sent_at) AS sent_at,
    bool_or(was_sent) AS was_sent,
    bool_or(was_dropped) AS was_dropped,
    bool_or(was_deferred) AS was_deferred,
    min(first_delivered_at) AS first_delivered_at,
    max(delivered_at) AS delivered_at,
    max(bounced_at) AS bounced_at,
    arg_max(
        bounce_class,
        epoch_us(bounced_at) * 4
            + CASE bounce_class
                WHEN 'hard' THEN 3 WHEN 'soft' THEN 2 WHEN 'undetermined' THEN 1 ELSE 0
            END
    ) AS bounce_class,
    sum(open_events)::BIGINT AS open_events,
    sum(machine_open_events)::BIGINT AS machine_open_events,
    min(first_human_open_at) AS first_human_open_at,
    sum(click_events)::BIGINT AS click_events,
    sum(human_clicks)::BIGINT AS human_clicks,
    min(first_human_click_at) AS first_human_click_at,
    max(last_human_click_at) AS last_human_click_at,
    bool_or(complained) AS complained,
    max(unsubscribed_at) AS unsubscribed_at,
    max(resubscribed_at) AS resubscribed_at
FROM {states}
GROUP BY message_id, recipient
