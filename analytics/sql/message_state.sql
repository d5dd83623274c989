-- The state of each message: one row per (message_id, recipient) over a set of events (the
-- events view, or only the files newer than the rollup). Every column is an aggregate that can be merged again (message_state_merge.sql),
-- so a state computed once (the rollup) and a state of newer files combine into the same row
-- the raw events would give.
SELECT
    coalesce(message_id, '') AS message_id,
    recipient,
    -- The domain is part of the recipient, so every row of the group has the same one; max()
    -- says so in every SQL engine (DuckDB's any_value skips NULLs, Trino's arbitrary too, but
    -- not every engine's any_value does).
    max(recipient_domain) AS recipient_domain,
    max(campaign) AS campaign,
    max(provider) AS provider,
    max(source) AS source,
    min(occurred_at) AS sent_at,
    bool_or(event_type IN ('sent', 'delivered', 'deferred', 'bounced')) AS was_sent,
    bool_or(event_type = 'dropped') AS was_dropped,
    bool_or(event_type = 'deferred') AS was_deferred,
    min(CASE WHEN event_type = 'delivered' THEN occurred_at END) AS first_delivered_at,
    max(CASE WHEN event_type = 'delivered' THEN occurred_at END) AS delivered_at,
    max(CASE WHEN event_type = 'bounced' THEN occurred_at END) AS bounced_at,
    -- The class of the last bounce; two bounces at the same instant: the more severe one.
    -- Bounces without a class are left out explicitly: DuckDB's arg_max skips rows whose
    -- value is NULL, other engines' max_by only rows whose key is NULL.
    arg_max(
        bounce_class,
        CASE WHEN event_type = 'bounced' AND bounce_class IS NOT NULL
            THEN epoch_us(occurred_at) * 4 + CASE bounce_class
                WHEN 'hard' THEN 3 WHEN 'soft' THEN 2 WHEN 'undetermined' THEN 1 ELSE 0
            END END
    ) AS bounce_class,
    count(CASE WHEN event_type = 'opened' THEN 1 END) AS open_events,
    count(CASE WHEN event_type = 'opened'
                AND agent IN ('apple_mpp', 'gmail_proxy', 'scanner', 'bot') THEN 1 END)
        AS machine_open_events,
    min(CASE WHEN event_type = 'opened' AND agent = 'human' THEN occurred_at END)
        AS first_human_open_at,
    count(CASE WHEN event_type = 'clicked' THEN 1 END) AS click_events,
    count(CASE WHEN event_type = 'clicked' AND agent = 'human' THEN 1 END) AS human_clicks,
    min(CASE WHEN event_type = 'clicked' AND agent = 'human' THEN occurred_at END)
        AS first_human_click_at,
    max(CASE WHEN event_type = 'clicked' AND agent = 'human' THEN occurred_at END)
        AS last_human_click_at,
    bool_or(event_type = 'complained') AS complained,
    max(CASE WHEN event_type = 'unsubscribed' THEN occurred_at END) AS unsubscribed_at,
    max(CASE WHEN event_type = 'resubscribed' THEN occurred_at END) AS resubscribed_at
FROM {events}
GROUP BY coalesce(message_id, ''), recipient
