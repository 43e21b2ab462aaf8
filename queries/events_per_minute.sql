-- name: events_per_minute
-- description: Events per minute between two instants (UTC), for a live chart
-- param: from timestamp = 2026-01-01 00:00:00
-- param: until timestamp = 2100-01-01 00:00:00
SELECT date_trunc('minute', event_time) AS minute, count(*) AS events
FROM events
WHERE event_time >= $1 AND event_time < $2
GROUP BY 1
ORDER BY 1
