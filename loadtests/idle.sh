#!/usr/bin/env bash
# Idle connections (issue 17): tidemark's resident memory with 10,000 idle pgwire sessions and
# 1,000 idle Flight SQL clients, before and after, per connection (a benchmark, not a test).
#
#   loadtests/idle.sh                  # 10,000 pgwire, 1,000 Flight
#   PG=2000 FLIGHT=200 loadtests/idle.sh
#   BIN=/tmp/old/tidemark loadtests/idle.sh   # another build (no cargo build)
#
# Run it last in a series: its 11,000 client sockets hold ephemeral ports for a while after.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_python

PG=${PG:-10000}
FLIGHT=${FLIGHT:-1000}
PORT=${PORT:-55460}
FLIGHT_PORT=${FLIGHT_PORT:-55461}
DB=tidemark_idle_bench
# each idle client is a socket in the Python process and one in tidemark (each has this limit)
ulimit -n $((PG + FLIGHT + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bench_bin

fresh_db "$DB"
psql -q -h 127.0.0.1 -U postgres -d "$DB" <<'SQL'
CREATE TABLE events_batch (id bigint, event_time timestamp, country text);
CREATE TABLE events_speed (LIKE events_batch);
SQL
cat >"$BENCH_WORK/tidemark.toml" <<TOML
[listen]
pg = "127.0.0.1:$PORT"
flight = "127.0.0.1:$FLIGHT_PORT"
[pg]
max_connections = $((PG + 100))
[warehouse]
url = "postgres://postgres@127.0.0.1:5432/$DB"
[[tables]]
name = "events"
time_column = "event_time"
batch_table = "events_batch"
speed_table = "events_speed"
TOML
start_tidemark "$BENCH_WORK/tidemark.toml" "$PORT"
bench_log "$PG idle pgwire sessions and $FLIGHT idle Flight clients against tidemark (pid $TM_PID)"
.venv/bin/python loadtests/idle.py --pid "$TM_PID" --pg-port "$PORT" --flight-port "$FLIGHT_PORT" \
  --database "$DB" --pg "$PG" --flight "$FLIGHT"
