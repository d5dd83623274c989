-- The rules of analytics/suppression.py as one set-based query over every candidate address at
-- once: the dashboard needs the whole table of a ten-million-event lake in a second, and the
-- event-by-event walk takes several. Both must agree exactly (tests/test_suppression_table.py
-- checks them against each other on generated histories). The walk stays the reference and
-- the only source of `why` explanations.
-- Parameters: $address (NULL for every address) and the [suppression] switches.
WITH candidates AS (
{candidates}
),
ordered AS (
    -- The walk's order: by time, ties by event id.
    SELECT *, row_number() OVER (PARTITION BY address ORDER BY occurred_at, event_id) AS seq
    FROM candidates
),
marks AS (
    -- A delivery resets the soft bounces before it; a resubscribe lifts earlier unsubscribes.
    SELECT
        address,
        coalesce(max(seq) FILTER (WHERE event_type = 'delivered'), 0) AS last_delivered,
        coalesce(max(seq) FILTER (WHERE event_type = 'resubscribed'), 0) AS last_resubscribed
    FROM ordered
    GROUP BY address
),
simple AS (
    -- Rules that hold from their first event on (an unsubscribe: its first since the last
    -- resubscribe).
    SELECT
        o.address,
        CASE
            WHEN o.event_type = 'bounced' THEN 'hard_bounce'
            WHEN o.event_type = 'complained' THEN 'complaint'
            WHEN o.event_type = 'unsubscribed' THEN 'unsubscribe'
            ELSE 'invalid_drop'
        END AS rule,
        o.seq,
        o.occurred_at AS since,
        [o.event_id] AS event_ids,
        CASE
            WHEN o.event_type = 'dropped' THEN coalesce(nullif(o.reason, ''), o.bounce_class)
            ELSE o.reason
        END AS reason
    FROM ordered AS o
    JOIN marks AS m USING (address)
    WHERE (o.event_type = 'bounced' AND o.bounce_class = 'hard' AND $hard_bounce)
        OR (o.event_type = 'complained' AND $complaint)
        OR (o.event_type = 'unsubscribed' AND $unsubscribe AND o.seq > m.last_resubscribed)
        OR (
            o.event_type = 'dropped' AND o.bounce_class IN ('invalid', 'bounced')
            AND $invalid_drop
        )
),
first_simple AS (
    SELECT * FROM simple
    QUALIFY row_number() OVER (PARTITION BY address, rule ORDER BY seq) = 1
),
soft AS (
    -- Soft bounces since the address's last delivery.
    SELECT o.address, o.seq, o.occurred_at, o.event_id, o.reason
    FROM ordered AS o
    JOIN marks AS m USING (address)
    WHERE o.event_type = 'bounced' AND o.bounce_class = 'soft' AND o.seq > m.last_delivered
),
windows AS (
    -- At each soft bounce: the soft bounces up to it that lie within the window before it.
    SELECT
        i.address,
        i.seq,
        i.occurred_at AS since,
        i.reason,
        list(j.event_id ORDER BY j.seq) AS event_ids,
        count(*) AS bounces
    FROM soft AS i
    JOIN soft AS j
        ON j.address = i.address
        AND j.seq <= i.seq
        AND epoch_us(i.occurred_at) - epoch_us(j.occurred_at) <= $window_us
    GROUP BY i.address, i.seq, i.occurred_at, i.reason
),
first_soft AS (
    SELECT address, 'soft_bounces' AS rule, seq, since, event_ids, reason
    FROM windows
    WHERE $soft_bounce_limit <> 0 AND bounces >= $soft_bounce_limit
    QUALIFY row_number() OVER (PARTITION BY address ORDER BY seq) = 1
),
findings AS (
    SELECT
        *,
        CASE rule
            WHEN 'hard_bounce' THEN 0
            WHEN 'complaint' THEN 1
            WHEN 'unsubscribe' THEN 2
            WHEN 'soft_bounces' THEN 3
            ELSE 4
        END AS rule_order
    FROM (
        SELECT address, rule, seq, since, event_ids, reason FROM first_simple
        UNION ALL
        SELECT address, rule, seq, since, event_ids, reason FROM first_soft
    )
)
-- One row per address: the earliest rule (ties in the order of RULES), and every rule.
SELECT
    address,
    first(rule ORDER BY since, rule_order) AS rule,
    first(reason ORDER BY since, rule_order) AS reason,
    min(since) AS suppressed_at,
    first(event_ids ORDER BY since, rule_order) AS event_ids,
    list(rule ORDER BY rule_order) AS rules
FROM findings
GROUP BY address
ORDER BY address
