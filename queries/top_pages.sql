-- name: top_pages
-- description: The most visited pages for one device type
-- param: device text = mobile
-- param: limit int8 = 10
SELECT page, count(*) AS views, avg(duration_ms) AS avg_duration_ms
FROM events
WHERE device = $1
GROUP BY page
ORDER BY views DESC, page
LIMIT $2
