#!/usr/bin/env bash
# Pulling a large result into Python, in one run: 1,000,000 rows x 10 mixed columns of a logical
# table (split over a batch and a speed table by the watermark)
#   - through tidemark's Arrow Flight SQL frontend with ADBC's Flight SQL driver,
#   - through tidemark's pgwire listener with ADBC's PostgreSQL driver (binary COPY) and with
#     psycopg 3, and tidemark's binary COPY read as bytes,
#   - directly from PostgreSQL (the union view) with ADBC's PostgreSQL driver and psycopg 3,
#   - with PostgreSQL's own COPY (SELECT * FROM view) TO STDOUT (FORMAT binary), read fully
#     through psycopg, as the floor.
# Prints a markdown table of the times and ratios and tidemark's peak memory (a benchmark, not a
# test: nothing here fails on timing).
#
#   loadtests/pull.sh                      # 3 timed runs of each path, median reported
#   REPEAT=5 ROWS=2000000 loadtests/pull.sh
#   PATHS=adbc_tm,copy loadtests/pull.sh   # a subset (see loadtests/pull.py)
#   BIN=/tmp/old/tidemark loadtests/pull.sh   # another build (no cargo build)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_python

ROWS=${ROWS:-1000000}
REPEAT=${REPEAT:-3}
DB=tidemark_flight_bench
PGURL="postgres://postgres@127.0.0.1:5432/$DB"
PORT=${PORT:-55451}
TM_PG_PORT=${TM_PG_PORT:-55452}
bench_bin

# The batch table holds ids 1..BATCH_END (all before W); the speed table holds ids from
# SPEED_START on, of which those at or after W (id > BATCH_END) count: ROWS rows in all, about
# 10% of them from the speed layer, and an overlap that the watermark must drop.
BATCH_END=$((ROWS * 9 / 10))
SPEED_START=$((BATCH_END - ROWS / 20 + 1))
echo "==> preparing $DB ($ROWS rows: batch 1..$BATCH_END, speed $SPEED_START..$ROWS, W at row $((BATCH_END + 1)))"
fresh_db "$DB"
psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d "$DB" <<SQL
CREATE TABLE events_batch (
  id int8, event_time timestamp, user_id int4, score float8, amount numeric(12,2),
  country text, device text, url text, day date, flag bool);
CREATE TABLE events_speed (LIKE events_batch);
CREATE FUNCTION bench_rows(lo int8, hi int8) RETURNS SETOF events_batch LANGUAGE sql AS \$\$
  SELECT g,
         timestamp '2026-01-01' + g * interval '1 second',
         CASE WHEN g % 97 = 0 THEN NULL ELSE ((g * 7919) % 100000)::int4 END,
         (g % 100003) / 7.0,
         CASE WHEN g % 89 = 0 THEN NULL ELSE (((g * 37) % 10000000) - 500000) / 100.0 END,
         (ARRAY['DE','FR','US','GB','JP','BR','IN','AU'])[1 + g % 8],
         (ARRAY['ios','android','web','Smart TV'])[1 + g % 4],
         '/product/' || (g % 5003) || '?ref=campaign-' || (g % 97) || '&session=' || md5(g::text),
         date '2026-01-01' + (g / 86400)::int,
         CASE WHEN g % 101 = 0 THEN NULL ELSE g % 3 = 0 END
  FROM generate_series(lo, hi) g
\$\$;
INSERT INTO events_batch SELECT * FROM bench_rows(1, $BATCH_END);
INSERT INTO events_speed SELECT * FROM bench_rows($SPEED_START, $ROWS);
CREATE TABLE tidemark_watermarks (table_name text PRIMARY KEY, batch_watermark timestamp, updated_at timestamptz DEFAULT now());
INSERT INTO tidemark_watermarks VALUES ('events', timestamp '2026-01-01' + $((BATCH_END + 1)) * interval '1 second');
VACUUM ANALYZE;
SQL

cat > "$BENCH_WORK/tidemark.toml" <<TOML
[listen]
flight = "127.0.0.1:$PORT"
pg = "127.0.0.1:$TM_PG_PORT"
[warehouse]
url = "$PGURL"
[[tables]]
name = "events"
time_column = "event_time"
batch_table = "events_batch"
speed_table = "events_speed"
TOML
start_tidemark "$BENCH_WORK/tidemark.toml" "$PORT"

.venv/bin/python loadtests/pull.py \
  --flight "grpc://127.0.0.1:$PORT" --tm-pg "postgresql://postgres@127.0.0.1:$TM_PG_PORT/$DB" \
  --pg "postgresql://postgres@127.0.0.1:5432/$DB" \
  --table events --rows "$ROWS" --repeat "$REPEAT" --pid "$TM_PID" \
  ${PATHS:+--paths "$PATHS"}

