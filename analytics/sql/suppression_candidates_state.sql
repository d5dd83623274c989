-- suppression_candidates.sql, read from the suppression state (address_state.sql) of the
-- rollup and of the events files newer than it (the state below) instead of from every event: the
-- same rows, except that each candidate address keeps only its last delivery, which is all the
-- rules look at.
WITH state AS (
{state}
),
candidates AS (
    SELECT DISTINCT address FROM state
    WHERE event_type IN ('bounced', 'complained', 'unsubscribed', 'dropped')
      AND ($address IS NULL OR address = $address)
),
last_delivery AS (
    -- The rollup's last delivery and the newer files' ones: the latest of them, as ordered.
    SELECT address, event_id, event_type, bounce_class, occurred_at, reason, source
    FROM state SEMI JOIN candidates USING (address)
    WHERE event_type = 'delivered'
    QUALIFY row_number() OVER (
        PARTITION BY address ORDER BY occurred_at DESC, event_id DESC
    ) = 1
)
SELECT address, event_id, event_type, bounce_class, occurred_at, reason, source
FROM state SEMI JOIN candidates USING (address)
WHERE event_type <> 'delivered'
UNION ALL
SELECT * FROM last_delivery
ORDER BY address, occurred_at, event_id
