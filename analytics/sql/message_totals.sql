-- The rollup's second level (analytics/totals.py): every metric's numerator and denominator
-- summed per day a message was first seen, and per every dimension a report selects or
-- groups by. Each is a sum over messages (analytics/metrics.py), so adding these rows up
-- gives the numbers messages.sql gives. {sign} is empty, or '-' for the stored part of
-- messages that newer files changed (taken out, and their merged part put in).
SELECT
    campaign,
    date_trunc('day', sent_at) AS sent_at,
    recipient_domain,
    provider,
    source,
    {sign}count(*) AS messages,
    {columns}
FROM ({messages}) AS messages
GROUP BY ALL
