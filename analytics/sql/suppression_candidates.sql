-- Every event that can suppress an address or lift a suppression, for the addresses that have
-- at least one suppressing event, in time order. The rules themselves run in Python
-- (analytics/suppression.py): they walk each address's history once.
SELECT
    recipient AS address,
    event_id,
    event_type,
    bounce_class,
    occurred_at,
    coalesce(reason, smtp_status) AS reason,
    source
FROM events
WHERE event_type IN ('bounced', 'complained', 'unsubscribed', 'resubscribed', 'dropped', 'delivered')
  AND recipient IN (
      SELECT DISTINCT recipient FROM events
      WHERE event_type IN ('bounced', 'complained', 'unsubscribed', 'dropped')
  )
  AND ($address IS NULL OR recipient = $address)
ORDER BY recipient, occurred_at, event_id
