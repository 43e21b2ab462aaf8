-- name: revenue_by_country
-- description: Checkout revenue and order count per country since an instant (UTC)
-- param: since timestamp = 2026-01-01 00:00:00
SELECT country, count(*) AS orders, sum(amount) AS revenue
FROM events
WHERE page = '/checkout' AND event_time >= $1
GROUP BY country
ORDER BY revenue DESC NULLS LAST, country
