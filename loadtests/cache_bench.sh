#!/usr/bin/env bash
# The cache benchmarks of issue 6, in one run, on a generated `events` table (10,000,000 batch
# rows over the 60 days before W, 100,000 speed rows from W to now, W a few hours ago):
#
#   1. cold split query, caches off: tidemark latency / direct PostgreSQL on the union view
#   2. steady dashboard: 16 clients repeat a 7-day hourly aggregate for DURATION s with caches
#      on while the speed table receives ~200 rows/s: tidemark tps / direct tps, tidemark p99
#   3. cache hit ceiling: wrk rps of a cached POST /v1/query / rps of GET /healthz
#   4. after W advances: first GET /v1/queries/hourly_7d latency / a cache hit's
#   5. memory: peak gateway RSS vs the configured cache budgets + 150 MiB
#
# Prints the measurements and a markdown table of ratios measured in this run (a benchmark,
# not a test: it exits 0 whether or not the targets are met).
#
#   loadtests/cache_bench.sh                      # builds, loads (~30 s), runs (~3 min)
#   DURATION=10 loadtests/cache_bench.sh          # shorter steady-dashboard runs
#   KEEP_DB=1 loadtests/cache_bench.sh            # keep tidemark_cache_bench afterwards
#   SKIP_LOAD=1 loadtests/cache_bench.sh          # reuse it (implies KEEP_DB=1)
#
# Other knobs: COLD_RUNS (5), WRK_DURATION (10), W_SETTLE (3 s after W moves), SKIP_BUILD=1,
# BIN (another tidemark binary, e.g. an older build to compare with; implies SKIP_BUILD=1),
# TM_HTTP_PORT/TM_PG_PORT (55480/55481, the cold instance uses the next two ports).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/services.sh

DURATION=${DURATION:-30}
COLD_RUNS=${COLD_RUNS:-5}
WRK_DURATION=${WRK_DURATION:-10}
W_SETTLE=${W_SETTLE:-3}
SKIP_LOAD=${SKIP_LOAD:-0}
KEEP_DB=${KEEP_DB:-$SKIP_LOAD}
SKIP_BUILD=${SKIP_BUILD:-$([[ -n ${BIN:-} ]] && echo 1 || echo 0)}
TM_HTTP_PORT=${TM_HTTP_PORT:-55480}
TM_PG_PORT=${TM_PG_PORT:-55481}
COLD_HTTP_PORT=$((TM_HTTP_PORT + 2))
COLD_PG_PORT=$((TM_PG_PORT + 2))

DB=tidemark_cache_bench
PGURL="postgres://postgres@127.0.0.1:5432/$DB"
BIN=${BIN:-target/release/tidemark}
BATCH_ROWS=10000000
SPEED_ROWS=100000
# cache budgets of the cached instance (bytes); memory target = their sum + 150 MiB
BATCH_BYTES=$((256 << 20))
SPEED_BYTES=$((64 << 20))
RESULT_BYTES=$((64 << 20))
BUDGET_MIB=$(((BATCH_BYTES + SPEED_BYTES + RESULT_BYTES) >> 20))
RSS_LIMIT_MIB=$((BUDGET_MIB + 150))

# the dashboard query (also the named query hourly_7d) and a second split aggregate
HOURLY_SQL="SELECT date_trunc('hour', event_time) AS hour, count(*) AS events, sum(amount) AS revenue FROM events WHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '7 days' GROUP BY 1 ORDER BY 1"
COUNTRY_SQL="SELECT country, count(*) AS events, sum(amount) AS revenue FROM events WHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '30 days' GROUP BY country ORDER BY country"
# ~200 rows/s into the speed table: 20 rows every 100 ms, timestamped now (UTC)
INSERT_SQL="INSERT INTO events_speed SELECT nextval('cache_bench_ids'), now() AT TIME ZONE 'UTC', (ARRAY['US','DE','FR','GB','JP','BR','IN','AU','CA','ES'])[1 + g % 10], (ARRAY['mobile','desktop','tablet'])[1 + g % 3], (g * 7.31)::numeric(12,2) FROM generate_series(1, 20) g;"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"; }
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d "$DB" "$@"; }
psql_val() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d "$DB" -Atc "$1"; }
now_s() { date +%s.%N; }
# awk arithmetic / formatting helpers
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
yesno() { awk "BEGIN { print (($1) ? \"yes\" : \"no\") }"; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- processes

# start_tidemark LABEL CONFIG HTTP PG: starts `tidemark serve`, waits (bounded) for both
# listeners, samples its VmRSS every 0.5 s into $WORK/rss-LABEL
start_tidemark() {
  local label=$1 cfg=$2 http=$3 pg=$4 i
  log "starting tidemark ($label) on http :$http, pg :$pg"
  RUST_LOG=warn $BIN serve --config "$cfg" >"$WORK/tidemark-$label.log" 2>&1 &
  TM_PID=$!
  TM_LABEL=$label
  (
    while kill -0 "$TM_PID" 2>/dev/null; do
      awk '/^VmRSS:/ { print $2 }' "/proc/$TM_PID/status" 2>/dev/null || break
      sleep 0.5
    done
  ) >>"$WORK/rss-$label" &
  RSS_PIDS+=($!)
  for ((i = 0; i < 300; i++)); do
    kill -0 "$TM_PID" 2>/dev/null || { TM_PID=; die "tidemark ($label) exited during start-up (log below)"; }
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$http/healthz" 2>/dev/null &&
      pg_isready -q -h 127.0.0.1 -p "$pg"; then
      return 0
    fi
    sleep 0.1
  done
  die "tidemark ($label) did not answer on :$http and :$pg within 30 s"
}

# stop_tidemark: records the kernel's peak RSS (VmHWM), then stops the process (bounded)
stop_tidemark() {
  local i
  awk '/^VmHWM:/ { print $2 }' "/proc/$TM_PID/status" >>"$WORK/hwm-$TM_LABEL" 2>/dev/null || true
  kill "$TM_PID" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$TM_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$TM_PID" 2>/dev/null || true
  wait "$TM_PID" 2>/dev/null || true
  TM_PID=
}

insert_loop() {
  while :; do
    printf '%s\n' "$INSERT_SQL" || exit 0
    sleep 0.1
  done
}

# one long-lived psql fed through a FIFO, so the load costs one connection, not a process per batch
start_inserter() {
  INS_ID0=$(seq_used)
  mkfifo "$WORK/inserts.fifo"
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d "$DB" <"$WORK/inserts.fifo" >"$WORK/inserter.log" 2>&1 &
  INS_PSQL_PID=$!
  insert_loop >"$WORK/inserts.fifo" &
  INS_LOOP_PID=$!
  INS_START=$(now_s)
  sleep 1
  kill -0 "$INS_PSQL_PID" 2>/dev/null || die "the speed-table inserter (psql) stopped (log below)"
}

stop_inserter() {
  if [[ -n $INS_LOOP_PID ]]; then
    kill "$INS_LOOP_PID" 2>/dev/null || true
    wait "$INS_LOOP_PID" 2>/dev/null || true
  fi
  INS_LOOP_PID=
  if [[ -n $INS_PSQL_PID ]]; then
    local i
    for ((i = 0; i < 50; i++)); do
      kill -0 "$INS_PSQL_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$INS_PSQL_PID" 2>/dev/null || true
    wait "$INS_PSQL_PID" 2>/dev/null || true
  fi
  INS_PSQL_PID=
  return 0
}

# pgb PORT ARGS...: pgbench against $DB on PORT; prints its output, dies on failure
pgb() {
  local port=$1 out
  shift
  if ! out=$(pgbench -n -h 127.0.0.1 -p "$port" -U postgres "$@" "$DB" 2>&1); then
    printf '%s\n' "$out" >&2
    die "pgbench against port $port failed"
  fi
  printf '%s\n' "$out"
}
tps_of() { grep -Eo 'tps = [0-9.]+' <<<"$1" | head -1 | awk '{ print $3 }'; }
lat_of() { grep -Eo 'latency average = [0-9.]+' <<<"$1" | head -1 | awk '{ print $4 }'; }
# p99 (ms) of pgbench per-transaction logs PREFIX.* (column 3: latency in microseconds)
p99_of() {
  cat "$1".* | awk '{ print $3 }' | sort -n |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } i = int(NR * 0.99); if (i < NR * 0.99) i++; if (i < 1) i = 1; printf "%.2f", v[i] / 1000 }'
}
# psql through a port, result discarded (warm-ups)
run_once() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$DB" -f "$2" >/dev/null; }
# number_or_die WHAT VALUE: VALUE must be a positive number
number_or_die() {
  awk -v v="$2" 'BEGIN { exit !(v ~ /^[0-9]+(\.[0-9]+)?$/ && v + 0 > 0) }' || die "could not measure $1 (got '$2')"
  printf '%s' "$2"
}
# the value of response header $1 (lower case) in headers on stdin
hdr() { tr -d '\r' | awk -F': ' -v h="$1" 'tolower($1) == h { print $2 }'; }
# the sequence's last used value (inserted rows are counted by it)
seq_used() { psql_val "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM cache_bench_ids"; }

WORK=$(mktemp -d)
TM_PID=
TM_LABEL=
INS_LOOP_PID=
INS_PSQL_PID=
RSS_PIDS=()

cleanup() {
  local rc=$?
  set +e
  stop_inserter
  [[ -n $TM_PID ]] && stop_tidemark
  local p
  for p in "${RSS_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [[ $rc -ne 0 ]]; then
    local f
    for f in "$WORK"/tidemark-*.log "$WORK"/inserter.log; do
      [[ -s $f ]] || continue
      printf '\n--- last lines of %s ---\n' "$(basename "$f")" >&2
      tail -n 30 "$f" >&2
    done
  fi
  if [[ $KEEP_DB == 1 ]]; then
    log "keeping database $DB (rerun with SKIP_LOAD=1)"
  else
    psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- tools, services, build

ensure_services
need pgbench "PostgreSQL client tools"
need curl "apt-get install curl"
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null ||
    { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null; } ||
    die "could not install wrk"
fi
for p in "$TM_HTTP_PORT" "$TM_PG_PORT" "$COLD_HTTP_PORT" "$COLD_PG_PORT"; do
  port_in_use "$p" && die "port $p is already in use (set TM_HTTP_PORT/TM_PG_PORT)"
done

if [[ $SKIP_BUILD != 1 ]]; then
  log "cargo build --release"
  cargo build --release -q
fi
[[ -x $BIN ]] || die "$BIN not found (build with cargo build --release)"

# ---------------------------------------------------------------- data

if [[ $SKIP_LOAD == 1 ]]; then
  [[ $(psql -X -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$DB'") == 1 ]] ||
    die "SKIP_LOAD=1 but database $DB does not exist (run once with KEEP_DB=1)"
  [[ $(psql_val "SELECT to_regclass('cache_bench_meta') IS NOT NULL AND to_regclass('events_batch') IS NOT NULL AND to_regclass('events_speed') IS NOT NULL AND to_regclass('cache_bench_ids') IS NOT NULL") == t ]] ||
    die "database $DB lacks the bench tables; run without SKIP_LOAD=1"
  log "reusing $DB: removing rows added by earlier runs and resetting W"
  psql_db <<'SQL'
DELETE FROM events_speed WHERE event_id > (SELECT max_loaded_id FROM cache_bench_meta);
DELETE FROM events_batch WHERE event_time >= (SELECT w FROM cache_bench_meta);
UPDATE tidemark_watermarks SET batch_watermark = (SELECT w FROM cache_bench_meta), updated_at = now()
  WHERE table_name = 'events';
VACUUM (ANALYZE) events_speed;
VACUUM (ANALYZE) events_batch;
SQL
  LOAD_NOTE="reused (loaded at $(psql_val "SELECT to_char(loaded_at, 'YYYY-MM-DD HH24:MI') FROM cache_bench_meta") UTC)"
else
  log "loading $DB: $BATCH_ROWS batch rows, $SPEED_ROWS speed rows"
  psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  t0=$(now_s)
  psql_db -v batch_rows="$BATCH_ROWS" -v speed_rows="$SPEED_ROWS" <<'SQL'
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
-- UNLOGGED: no WAL for the bulk load; queries read them like any table
CREATE UNLOGGED TABLE events_batch (event_id bigint, event_time timestamp, country text, device text, amount numeric(12,2));
CREATE UNLOGGED TABLE events_speed (LIKE events_batch);
CREATE SEQUENCE cache_bench_ids START 20000001;
-- W (a few hours ago, on the hour, UTC) and what the load created, for SKIP_LOAD=1 reruns
CREATE TABLE cache_bench_meta (w timestamp NOT NULL, loaded_at timestamp NOT NULL, max_loaded_id bigint NOT NULL);
INSERT INTO cache_bench_meta
  SELECT date_trunc('hour', now() AT TIME ZONE 'UTC') - interval '3 hours', now() AT TIME ZONE 'UTC',
         :batch_rows + :speed_rows;
-- batch: evenly over the 60 days before W, in time order; dimensions from a hash of the id
INSERT INTO events_batch
SELECT g, m.w - interval '60 days' + (g - 1) * (interval '60 days' / :batch_rows),
  (ARRAY['US','DE','FR','GB','JP','BR','IN','AU','CA','ES'])[1 + h % 10],
  (ARRAY['mobile','desktop','tablet'])[1 + (h / 10) % 3],
  ((h / 30) % 50000) / 100.0
FROM cache_bench_meta m,
     (SELECT g, hashint8(g) & 2147483647 AS h FROM generate_series(1, :batch_rows) g) s;
-- speed: evenly from W to now
INSERT INTO events_speed
SELECT :batch_rows + g, m.w + (m.loaded_at - m.w) * ((g - 1)::float8 / :speed_rows),
  (ARRAY['US','DE','FR','GB','JP','BR','IN','AU','CA','ES'])[1 + h % 10],
  (ARRAY['mobile','desktop','tablet'])[1 + (h / 10) % 3],
  ((h / 30) % 50000) / 100.0
FROM cache_bench_meta m,
     (SELECT g, hashint8(:batch_rows + g) & 2147483647 AS h FROM generate_series(1, :speed_rows) g) s;
CREATE INDEX ON events_batch (event_time);
CREATE INDEX ON events_speed (event_time);
CREATE TABLE IF NOT EXISTS tidemark_watermarks (table_name text PRIMARY KEY, batch_watermark timestamp, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO tidemark_watermarks SELECT 'events', w, now() FROM cache_bench_meta
  ON CONFLICT (table_name) DO UPDATE SET batch_watermark = EXCLUDED.batch_watermark, updated_at = now();
VACUUM (ANALYZE) events_batch;
VACUUM (ANALYZE) events_speed;
SQL
  LOAD_NOTE="$(calc '%.1f' "$(now_s) - $t0") s"
  log "loaded in $LOAD_NOTE"
fi
W0=$(psql_val "SELECT w FROM cache_bench_meta")
read -r NB NS < <(psql_val "SELECT (SELECT count(*) FROM events_batch), (SELECT count(*) FROM events_speed)" | tr '|' ' ')
log "W = $W0 (UTC); events_batch $NB rows, events_speed $NS rows"

# ---------------------------------------------------------------- configs and queries

mkdir -p "$WORK/queries"
cat >"$WORK/queries/hourly_7d.sql" <<SQL
-- name: hourly_7d
-- description: Events and revenue per hour over the last 7 days (UTC)
$HOURLY_SQL
SQL
printf '%s;\n' "$HOURLY_SQL" >"$WORK/hourly.sql"
printf '%s;\n' "$COUNTRY_SQL" >"$WORK/country.sql"

# write_config FILE HTTP PG ENABLED
write_config() {
  cat >"$1" <<TOML
[listen]
http = "127.0.0.1:$2"
pg = "127.0.0.1:$3"

[warehouse]
url = "$PGURL"
pool_size = 16
watermark_poll = "1s"

[cache]
enabled = $4
batch_bytes = $BATCH_BYTES
speed_bytes = $SPEED_BYTES
result_bytes = $RESULT_BYTES
speed_ttl = "1s"

[queries]
dir = "$WORK/queries"

[[tables]]
name = "events"
time_column = "event_time"
batch_table = "events_batch"
speed_table = "events_speed"
TOML
}
write_config "$WORK/cold.toml" "$COLD_HTTP_PORT" "$COLD_PG_PORT" false
write_config "$WORK/hot.toml" "$TM_HTTP_PORT" "$TM_PG_PORT" true

log "tidemark setup"
$BIN setup --config "$WORK/hot.toml" >"$WORK/setup.log" 2>&1 || { cat "$WORK/setup.log" >&2; die "tidemark setup failed"; }
[[ $(psql_val "SELECT to_regclass('events') IS NOT NULL") == t ]] || die "tidemark setup did not create the events view"

# ---------------------------------------------------------------- 1. cold split queries

start_tidemark cold "$WORK/cold.toml" "$COLD_HTTP_PORT" "$COLD_PG_PORT"
cache_hdr=$(curl -fsS -o /dev/null -D - --max-time 120 -H 'content-type: application/json' \
  --data "{\"sql\": \"$HOURLY_SQL\"}" "http://127.0.0.1:$COLD_HTTP_PORT/v1/query" | tr -d '\r' |
  awk -F': ' 'tolower($1) == "tidemark-plan" { p = $2 } tolower($1) == "tidemark-cache" { c = $2 } END { print p "/" (c == "" ? "-" : c) }')
log "cold instance: 7-day hourly plan/cache = $cache_hdr"
[[ $cache_hdr == split/* ]] || warn "the 7-day hourly query is not planned as a split ($cache_hdr)"

declare -A COLD_DIRECT COLD_TM COLD_RATIO
for q in hourly country; do
  log "cold $q: warm-up, then $COLD_RUNS runs direct and through tidemark (caches off)"
  run_once 5432 "$WORK/$q.sql"
  run_once "$COLD_PG_PORT" "$WORK/$q.sql"
  out=$(pgb 5432 -c 1 -t "$COLD_RUNS" -f "$WORK/$q.sql")
  COLD_DIRECT[$q]=$(number_or_die "direct $q latency" "$(lat_of "$out")")
  out=$(pgb "$COLD_PG_PORT" -c 1 -t "$COLD_RUNS" -f "$WORK/$q.sql")
  COLD_TM[$q]=$(number_or_die "tidemark $q latency" "$(lat_of "$out")")
  COLD_RATIO[$q]=$(calc '%.2f' "${COLD_TM[$q]} / ${COLD_DIRECT[$q]}")
done
stop_tidemark

# ---------------------------------------------------------------- 2. steady dashboard

start_tidemark hot "$WORK/hot.toml" "$TM_HTTP_PORT" "$TM_PG_PORT"
start_inserter
run_once "$TM_PG_PORT" "$WORK/hourly.sql"
run_once 5432 "$WORK/hourly.sql"

log "steady dashboard, direct: 16 clients, ${DURATION} s (slow on purpose)"
out=$(pgb 5432 -c 16 -j 2 -T "$DURATION" -l --log-prefix="$WORK/steady_direct" -f "$WORK/hourly.sql")
STEADY_DIRECT_TPS=$(number_or_die "direct tps" "$(tps_of "$out")")
STEADY_DIRECT_P99=$(number_or_die "direct p99" "$(p99_of "$WORK/steady_direct")")
log "steady dashboard, tidemark (caches on): 16 clients, ${DURATION} s"
out=$(pgb "$TM_PG_PORT" -c 16 -j 2 -T "$DURATION" -l --log-prefix="$WORK/steady_tm" -f "$WORK/hourly.sql")
STEADY_TM_TPS=$(number_or_die "tidemark tps" "$(tps_of "$out")")
STEADY_TM_P99=$(number_or_die "tidemark p99" "$(p99_of "$WORK/steady_tm")")
STEADY_RATIO=$(calc '%.2f' "$STEADY_TM_TPS / $STEADY_DIRECT_TPS")

# ---------------------------------------------------------------- 3. cache hit ceiling

BODY="{\"sql\": \"$HOURLY_SQL\"}"
cat >"$WORK/query.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[$BODY]==]
LUA
post_query() {
  curl -fsS -o /dev/null -D - --max-time 60 -H 'content-type: application/json' --data "$BODY" \
    "http://127.0.0.1:$TM_HTTP_PORT/v1/query"
}
post_query >/dev/null
CEIL_CACHE=$(post_query | hdr tidemark-cache)
log "cached /v1/query answers with tidemark-cache: ${CEIL_CACHE:-none}"
[[ $CEIL_CACHE == hit ]] || warn "expected tidemark-cache: hit for the repeated POST /v1/query, got '${CEIL_CACHE:-none}'"

# wrk_rps URL [SCRIPT]: requests/s; dies on socket errors or non-2xx answers
wrk_rps() {
  local out args=(-t2 -c16 -d"${WRK_DURATION}s")
  [[ -n ${2:-} ]] && args+=(-s "$2")
  out=$(wrk "${args[@]}" "$1" 2>&1) || { printf '%s\n' "$out" >&2; die "wrk $1 failed"; }
  if grep -q 'Non-2xx' <<<"$out"; then
    printf '%s\n' "$out" >&2
    die "wrk $1: non-2xx answers"
  fi
  grep -q 'Socket errors' <<<"$out" && warn "wrk $1: $(grep 'Socket errors' <<<"$out" | sed 's/^ *//')"
  number_or_die "wrk requests/s of $1" "$(grep -E '^Requests/sec:' <<<"$out" | awk '{ print $2 }')"
}
log "cache hit ceiling: wrk -t2 -c16 -d${WRK_DURATION}s, POST /v1/query then GET /healthz"
CEIL_QUERY_RPS=$(wrk_rps "http://127.0.0.1:$TM_HTTP_PORT/v1/query" "$WORK/query.lua")
CEIL_HEALTH_RPS=$(wrk_rps "http://127.0.0.1:$TM_HTTP_PORT/healthz")
CEIL_RATIO=$(calc '%.2f' "$CEIL_QUERY_RPS / $CEIL_HEALTH_RPS")

# ---------------------------------------------------------------- 4. after W advances

NAMED_URL="http://127.0.0.1:$TM_HTTP_PORT/v1/queries/hourly_7d"
# named_get: "seconds cache-status" of one GET of the named query
named_get() {
  local t
  t=$(curl -fsS -o /dev/null -D "$WORK/named.hdr" -w '%{time_total}' --max-time 60 "$NAMED_URL") ||
    die "GET $NAMED_URL failed"
  echo "$t $(hdr tidemark-cache <"$WORK/named.hdr")"
}
tm_w() { curl -fsS --max-time 10 "http://127.0.0.1:$TM_HTTP_PORT/v1/tables" | grep -o '"batch_watermark":[^,}]*' | head -1; }
named_get >/dev/null
named_get >/dev/null
W_BEFORE=$(tm_w)
[[ -n $W_BEFORE ]] || die "GET /v1/tables did not report a batch_watermark"
log "advancing W by 1 hour (moving that hour of speed rows into the batch table, one transaction)"
w_start=$(now_s)
psql_db <<'SQL'
BEGIN;
INSERT INTO events_batch
  SELECT s.* FROM events_speed s, tidemark_watermarks w
  WHERE w.table_name = 'events' AND s.event_time >= w.batch_watermark
    AND s.event_time < w.batch_watermark + interval '1 hour';
UPDATE tidemark_watermarks SET batch_watermark = batch_watermark + interval '1 hour', updated_at = now()
  WHERE table_name = 'events';
COMMIT;
SQL
# wait (bounded) until tidemark's watermark tracker has W, then until W_SETTLE s have passed
for ((i = 0; i < 100; i++)); do
  W_AFTER=$(tm_w || true)
  [[ -n $W_AFTER && $W_AFTER != "$W_BEFORE" ]] && break
  sleep 0.1
done
[[ $W_AFTER != "$W_BEFORE" ]] || warn "tidemark still reports $W_BEFORE 10 s after W moved"
W_SEEN=$(calc '%.2f' "$(now_s) - $w_start")
rest=$(calc '%.3f' "$W_SETTLE - ($(now_s) - $w_start)")
awk -v r="$rest" 'BEGIN { exit !(r > 0) }' && sleep "$rest"
FIRST_AT=$(calc '%.2f' "$(now_s) - $w_start")
r=$(named_get)
read -r FIRST_S FIRST_CACHE <<<"$r"
# The steady state of a dashboard refreshing a sliding range is one request per realtime
# epoch: the batch chunks come from the cache, the fringe chunk and the realtime part are
# computed fresh (tidemark-cache: partial). That is the "cache hit" the first request after
# a W move is compared with: each of these comes in a new epoch (speed_ttl = 1 s).
HIT_TIMES=()
HIT_CACHES=()
for _ in 1 2 3 4 5; do
  sleep 1.1
  r=$(named_get)
  read -r t c <<<"$r"
  HIT_TIMES+=("$t")
  HIT_CACHES+=("${c:--}")
done
# and, for the record, repeats inside one epoch (whole answers from the cache)
ANSWER_HITS=()
for _ in 1 2 3 4 5; do
  r=$(named_get)
  read -r t _ <<<"$r"
  ANSWER_HITS+=("$t")
done
ANSWER_HIT_MS=$(calc '%.2f' "$(printf '%s\n' "${ANSWER_HITS[@]}" | sort -g | sed -n 3p) * 1000")
HIT_MEDIAN_S=$(printf '%s\n' "${HIT_TIMES[@]}" | sort -g | sed -n 3p)
FIRST_MS=$(calc '%.2f' "$FIRST_S * 1000")
HIT_MS=$(calc '%.2f' "$HIT_MEDIAN_S * 1000")
W_RATIO=$(calc '%.2f' "$FIRST_S / $HIT_MEDIAN_S")

INS_ROWS=$(($(seq_used) - INS_ID0))
INS_RATE=$(calc '%.0f' "$INS_ROWS / ($(now_s) - $INS_START)")
stop_inserter
stop_tidemark

# ---------------------------------------------------------------- 5. memory

max_kb() { cat "$@" 2>/dev/null | sort -n | tail -1; }
RSS_HOT_MIB=$(calc '%.1f' "$(max_kb "$WORK/rss-hot" "$WORK/hwm-hot") / 1024")
RSS_COLD_MIB=$(calc '%.1f' "$(max_kb "$WORK/rss-cold" "$WORK/hwm-cold") / 1024")
RSS_MAX_MIB=$(calc '%.1f' "$(max_kb "$WORK"/rss-* "$WORK"/hwm-*) / 1024")
RSS_SAMPLES=$(cat "$WORK"/rss-* | wc -l)

# ---------------------------------------------------------------- report

cat <<EOF

Data: events_batch $NB rows, events_speed $NS rows at start, W = $W0 UTC; load: $LOAD_NOTE.
Speed-table inserts during the cached runs: $INS_ROWS rows (~$INS_RATE rows/s).

| measurement | direct PostgreSQL | tidemark |
|---|---|---|
| cold 7-day hourly, mean of $COLD_RUNS (ms, caches off) | ${COLD_DIRECT[hourly]} | ${COLD_TM[hourly]} |
| cold 30-day per country, mean of $COLD_RUNS (ms, caches off) | ${COLD_DIRECT[country]} | ${COLD_TM[country]} |
| steady 7-day hourly, 16 clients, ${DURATION} s: tps | $STEADY_DIRECT_TPS | $STEADY_TM_TPS |
| steady 7-day hourly: p99 latency (ms) | $STEADY_DIRECT_P99 | $STEADY_TM_P99 |

wrk -t2 -c16 -d${WRK_DURATION}s: POST /v1/query (tidemark-cache: ${CEIL_CACHE:-none}) $CEIL_QUERY_RPS req/s, GET /healthz $CEIL_HEALTH_RPS req/s.
W moved ${W_BEFORE#*:} -> ${W_AFTER#*:} (seen by tidemark after ${W_SEEN} s; first request at ${FIRST_AT} s): first GET /v1/queries/hourly_7d ${FIRST_MS} ms (tidemark-cache: ${FIRST_CACHE:--}), then $(printf '%s ' "${HIT_TIMES[@]}" | awk '{ for (i = 1; i <= NF; i++) printf "%s%.2f", (i > 1 ? ", " : ""), $i * 1000 }') ms ($(IFS=,; echo "${HIT_CACHES[*]}")), median ${HIT_MS} ms (each in a new realtime epoch); repeats within one epoch (whole answer cached): median ${ANSWER_HIT_MS} ms.
Peak RSS ($RSS_SAMPLES samples every 0.5 s + VmHWM): cold instance $RSS_COLD_MIB MiB, cached instance $RSS_HOT_MIB MiB; cache budget $BUDGET_MIB MiB.

| benchmark | measured | target | met |
|---|---|---|---|
| Cold split query (caches off): tidemark / direct latency | ${COLD_RATIO[hourly]}x (7-day hourly), ${COLD_RATIO[country]}x (30-day per country) | ≤ 1.1x | $(yesno "${COLD_RATIO[hourly]} <= 1.1 && ${COLD_RATIO[country]} <= 1.1") |
| Steady dashboard (16 clients, ${DURATION} s, caches on, inserts): tidemark / direct tps; tidemark p99 | ${STEADY_RATIO}x; p99 ${STEADY_TM_P99} ms | ≥ 50x; p99 < 50 ms | $(yesno "$STEADY_RATIO >= 50 && $STEADY_TM_P99 < 50") |
| Cache hit ceiling: cached POST /v1/query rps / GET /healthz rps | $CEIL_RATIO | ≥ 0.5 | $(yesno "$CEIL_RATIO >= 0.5") |
| After W advances: first named query / warm request (batch cached, realtime fresh) | ${W_RATIO}x (${FIRST_MS} ms / ${HIT_MS} ms) | ≤ 2x | $(yesno "$W_RATIO <= 2") |
| Memory: peak gateway RSS during the run | $RSS_MAX_MIB MiB | < $RSS_LIMIT_MIB MiB ($BUDGET_MIB MiB budget + 150) | $(yesno "$RSS_MAX_MIB < $RSS_LIMIT_MIB") |

Machine: $(nproc) CPUs ($(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, PostgreSQL $(psql_val "SHOW server_version" | awk '{ print $1 }'); $(date -u '+%Y-%m-%d %H:%M UTC').
EOF
