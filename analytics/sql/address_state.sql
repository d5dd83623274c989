-- The suppression engine's mergeable state of a relation of events: every event
-- that can suppress an address or lift a suppression, and each address's last delivery. The
-- rules look at deliveries only to reset the soft bounces before the last one, so the last
-- delivery (by time, ties by event id, as the walk orders them) stands for all of them.
-- The rollup stores it beside the per-message state; suppression_candidates_state.sql reads it.
SELECT
    recipient AS address,
    event_id,
    event_type,
    bounce_class,
    occurred_at,
    coalesce(reason, smtp_status) AS reason,
    source
FROM {events}
WHERE event_type IN ('bounced', 'complained', 'unsubscribed', 'resubscribed', 'dropped')
UNION ALL
SELECT
    address,
    last.id AS event_id,
    'delivered' AS event_type,
    NULL::VARCHAR AS bounce_class,
    last.at AS occurred_at,
    NULL::VARCHAR AS reason,
    last.source AS source
FROM (
    SELECT recipient AS address, max(struct_pack(at := occurred_at, id := event_id, source := source)) AS last
    FROM {events}
    WHERE event_type = 'delivered'
    GROUP BY recipient
)
