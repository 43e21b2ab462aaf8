#!/usr/bin/env bash
# Idle connections (issue 17): tidemark's resident memory with 10,000 idle pgwire sessions and
# 1,000 idle Flight SQL clients, before and after, per connection (a benchmark, not a test).
#
#   loadtests/idle.sh                  # 10,000 pgwire, 1,000 Flight
#   PG=2000 FLIGHT=200 loadtests/idle.sh
#   BIN=/tmp/old/tidemark loadtests/idle.sh   # another build (no cargo build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/services.sh
ensure_services
source scripts/clients.sh
ensure_python_client

PG=${PG:-10000}
FLIGHT=${FLIGHT:-1000}
PORT=${PORT:-55460}
FLIGHT_PORT=${FLIGHT_PORT:-55461}
DB=tidemark_idle_bench
WORK=$(mktemp -d)
trap 'kill "${TM_PID:-0}" 2>/dev/null || true; rm -rf "$WORK"; psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
# each idle client is a socket in the Python process and one in tidemark (each has this limit)
ulimit -n $((PG + FLIGHT + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ -z ${BIN:-} ]]; then
  cargo build --release -q
  BIN=target/release/tidemark
fi

psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql -q -h 127.0.0.1 -U postgres -d "$DB" <<'SQL'
CREATE TABLE events_batch (id bigint, event_time timestamp, country text);
CREATE TABLE events_speed (LIKE events_batch);
SQL
cat >"$WORK/tidemark.toml" <<TOML
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
$BIN setup --config "$WORK/tidemark.toml" >/dev/null
RUST_LOG=warn $BIN serve --config "$WORK/tidemark.toml" &
TM_PID=$!
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$PORT" && break; sleep 0.1; done
echo "==> $PG idle pgwire sessions and $FLIGHT idle Flight clients against tidemark (pid $TM_PID)"
.venv/bin/python loadtests/idle.py --pid "$TM_PID" --pg-port "$PORT" --flight-port "$FLIGHT_PORT" \
  --database "$DB" --pg "$PG" --flight "$FLIGHT"
