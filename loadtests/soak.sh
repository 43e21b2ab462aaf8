#!/usr/bin/env bash
# Soak test: PG_CLIENTS pgwire (pgbench), REST_CLIENTS REST and FLIGHT_CLIENTS Flight SQL clients
# for DURATION seconds against `tidemark demo` with its simulator streaming events (200/s into
# the stream and the Redis windows, speed loads every 5 s, W advancing every minute). Goal:
# zero failed queries, flat RSS, stable p99. Every SAMPLE_EVERY seconds it samples tidemark's
# VmRSS and PostgreSQL's backend count; at the end it prints a markdown table per interval
# (RSS, q/s, p50, p99 per protocol, errors), a summary line, per-query latencies, client errors
# and tidemark's WARN/ERROR log lines. Exit status: 0 no query failed, 1 some query failed,
# 2 the soak could not run (tools, start-up, tidemark died).
#
#   loadtests/soak.sh                                   # 200 + 100 + 10 clients, 10 minutes
#   DURATION=40 SAMPLE_EVERY=10 PG_CLIENTS=20 REST_CLIENTS=10 FLIGHT_CLIENTS=2 loadtests/soak.sh
#   BUILD=1 loadtests/soak.sh                           # cargo build --release first
#   REPORT_FILE=soak.md loadtests/soak.sh               # also write the report there (path
#                                                       # relative to the repository root)
#
# Isolation: the demo always creates a database named tidemark_demo, and writes its windows to
# Redis, so the soak runs it against a throwaway PostgreSQL cluster (initdb in /tmp, its own
# port, max_connections=PG_MAX_CONNECTIONS) and a throwaway redis-server, both removed on exit;
# the shared PostgreSQL on 5432 and Redis on 6379 are never touched. All ports are free ports
# from BASE_PORT up. Connection limits: the demo's built-in config serves pgwire with
# [pg] max_connections = 256 (so PG_CLIENTS <= 252) and warehouse.pool_size = 16 (plus as many
# raw connections for the pass-through fast path), so PostgreSQL sees about 20-40 backends;
# the script samples that count every interval and reports its maximum.
#
# Query mix (the demo's README examples and named queries): pgwire runs live 5-minute per
# country (windows), revenue per day, events per minute, revenue per region (join), top pages
# and a pass-through point query on `countries`; REST and Flight: see loadtests/soak_clients.py.
#
# Load (a steady rate below saturation, so that p99 measures tidemark, not the queue):
#   PG_CLIENTS (200)           pgbench clients; PG_EXTENDED_CLIENTS of them (PG_CLIENTS/4) use
#                              the extended protocol (-M extended), the rest the simple one;
#                              two pgbench processes with one thread each (-j 1 + -j 1)
#   PG_RATE (5)                transactions/s per pgbench client (pgbench --rate); 0: flat out
#   REST_CLIENTS (100)         Python threads (http.client, keep-alive), one request per
#   REST_INTERVAL (1) s        per client; 0: back to back
#   FLIGHT_CLIENTS (10)        Python threads (ADBC Flight SQL), one query per
#   FLIGHT_INTERVAL (2) s      per client; 0: back to back
# pgbench latencies include schedule lag (with --rate they are measured from the scheduled
# start), so a server that falls behind shows up in p99. Every query counts; a pgbench client
# stops at its first error (counted from pgbench's "aborted" lines).
#
# Other knobs: DURATION (600), SAMPLE_EVERY (60), WARMUP (15 s of light load, not reported),
# EVENTS (1000000 historic events), SIM_RATE (200 live events/s), PG_MAX_CONNECTIONS (100),
# BASE_PORT (56100), TM_LOG (RUST_LOG for tidemark; default drops the per-statement query
# log lines: info,tidemark::query=warn), KEEP_WORK=1 (keep logs in the work directory).
# Needs pgbench, PostgreSQL's server binaries, redis-server (scripts/services.sh installs
# them) and the .venv (scripts/clients.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

DURATION=${DURATION:-600}
SAMPLE_EVERY=${SAMPLE_EVERY:-60}
WARMUP=${WARMUP:-15}
PG_CLIENTS=${PG_CLIENTS:-200}
PG_EXTENDED_CLIENTS=${PG_EXTENDED_CLIENTS:-$((PG_CLIENTS / 4))}
PG_RATE=${PG_RATE:-5}
REST_CLIENTS=${REST_CLIENTS:-100}
REST_INTERVAL=${REST_INTERVAL:-1}
FLIGHT_CLIENTS=${FLIGHT_CLIENTS:-10}
FLIGHT_INTERVAL=${FLIGHT_INTERVAL:-2}
EVENTS=${EVENTS:-1000000}
SIM_RATE=${SIM_RATE:-200}
PG_MAX_CONNECTIONS=${PG_MAX_CONNECTIONS:-100}
BASE_PORT=${BASE_PORT:-56100}
TM_LOG=${TM_LOG:-info,tidemark::query=warn}
BUILD=${BUILD:-0}
KEEP_WORK=${KEEP_WORK:-0}
REPORT_FILE=${REPORT_FILE:-}

BIN=target/release/tidemark
PY=.venv/bin/python
CLIENTS_PY=loadtests/soak_clients.py
# what `tidemark demo` configures and cannot be changed without a config file
DEMO_PG_MAX_CONNECTIONS=256 # [pg] max_connections (default)
DEMO_POOL_SIZE=16           # warehouse.pool_size (default); the pgwire fast path adds as many

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"; }
is_uint() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a whole number (got '$2')"; }
is_num() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$1 must be a number (got '$2')"; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# prefixes each line of stdin with the epoch second it arrived at
stamp() { local l; while IFS= read -r l; do printf '%(%s)T %s\n' -1 "$l"; done; }
no_ansi() { sed 's/\x1b\[[0-9;]*m//g'; }

# ---------------------------------------------------------------- checks

check_knobs() {
  local v
  for v in DURATION SAMPLE_EVERY WARMUP PG_CLIENTS PG_EXTENDED_CLIENTS PG_RATE REST_CLIENTS \
    FLIGHT_CLIENTS EVENTS SIM_RATE PG_MAX_CONNECTIONS BASE_PORT; do
    is_uint "$v" "${!v}"
  done
  is_num REST_INTERVAL "$REST_INTERVAL"
  is_num FLIGHT_INTERVAL "$FLIGHT_INTERVAL"
  ((DURATION > 0 && SAMPLE_EVERY > 0)) || die "DURATION and SAMPLE_EVERY must be positive"
  ((PG_EXTENDED_CLIENTS <= PG_CLIENTS)) || die "PG_EXTENDED_CLIENTS > PG_CLIENTS"
  # the demo serves pgwire with [pg] max_connections = 256; keep a few for psql and probes
  ((PG_CLIENTS + 4 <= DEMO_PG_MAX_CONNECTIONS)) ||
    die "PG_CLIENTS=$PG_CLIENTS: the demo's [pg] max_connections is $DEMO_PG_MAX_CONNECTIONS (at most $((DEMO_PG_MAX_CONNECTIONS - 4)) clients)"
  # tidemark: pool_size pooled + as many raw (fast path) connections, the watermark poller,
  # the simulator and setup; pgbench and the other clients never reach PostgreSQL directly
  ((2 * DEMO_POOL_SIZE + 10 <= PG_MAX_CONNECTIONS)) ||
    die "PG_MAX_CONNECTIONS=$PG_MAX_CONNECTIONS is below what the demo may open ($((2 * DEMO_POOL_SIZE + 10)))"
}

check_tools() {
  svc_install_missing
  need pgbench "PostgreSQL client tools"
  need curl "apt-get install curl"
  need redis-server "apt-get install redis-server"
  PG_BIN=/usr/lib/postgresql/$(pg_version)/bin
  [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] || die "no PostgreSQL server binaries under $PG_BIN"
  "$PY" -c 'import adbc_driver_flightsql.dbapi, pyarrow' 2>/dev/null ||
    die "$PY lacks adbc_driver_flightsql/pyarrow: run scripts/clients.sh"
  if [[ $BUILD == 1 ]]; then
    log "cargo build --release"
    cargo build --release -q
  fi
  [[ -x $BIN ]] || die "$BIN not found: build it (cargo build --release) or run with BUILD=1"
}

# pick_ports: HTTP, PG, FLIGHT (tidemark), PG_PORT (PostgreSQL), REDIS_PORT, from BASE_PORT up
pick_ports() {
  local p=$BASE_PORT picked=()
  while ((${#picked[@]} < 5)); do
    ((p < 65536)) || die "no free ports from $BASE_PORT up"
    port_in_use "$p" || picked+=("$p")
    p=$((p + 1))
  done
  TM_HTTP_PORT=${picked[0]} TM_PG_PORT=${picked[1]} TM_FLIGHT_PORT=${picked[2]}
  PG_PORT=${picked[3]} REDIS_PORT=${picked[4]}
}

# ---------------------------------------------------------------- private PostgreSQL and Redis

# runs a PostgreSQL server program as the postgres user when we are root (it refuses root)
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  PG_DIR=$(mktemp -d /tmp/tidemark-soak-pg.XXXXXX)
  [[ $(id -u) -eq 0 ]] && chown postgres: "$PG_DIR"
  log "throwaway PostgreSQL cluster in $PG_DIR on 127.0.0.1:$PG_PORT (max_connections=$PG_MAX_CONNECTIONS)"
  as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -t 60 -l "$PG_DIR/postgres.log" \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=$PG_MAX_CONNECTIONS" \
    start >/dev/null || { cat "$PG_DIR/postgres.log" >&2; die "the throwaway PostgreSQL did not start"; }
  PG_STARTED=1
}

stop_postgres() {
  [[ $PG_STARTED == 1 ]] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -t 30 stop >/dev/null 2>&1 ||
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  PG_STARTED=0
}

start_redis() {
  local i
  log "throwaway Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  for ((i = 0; i < 50; i++)); do
    [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
    sleep 0.1
  done
  die "the throwaway Redis did not answer on :$REDIS_PORT"
}

pg_backends() {
  psql -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atc \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'" 2>/dev/null || echo "?"
}

# ---------------------------------------------------------------- tidemark demo

start_demo() {
  local i
  log "tidemark demo ($EVENTS historic events, $SIM_RATE live events/s): REST :$TM_HTTP_PORT, pgwire :$TM_PG_PORT, Flight :$TM_FLIGHT_PORT"
  # the demo's own config must win: these would point it elsewhere
  unset TIDEMARK_WAREHOUSE_URL TIDEMARK_LISTEN_HTTP TIDEMARK_LISTEN_PG TIDEMARK_LISTEN_FLIGHT
  NO_COLOR=1 RUST_LOG=$TM_LOG TIDEMARK_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    "$BIN" demo --admin-url "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
    --http "127.0.0.1:$TM_HTTP_PORT" --pg "127.0.0.1:$TM_PG_PORT" --flight "127.0.0.1:$TM_FLIGHT_PORT" \
    --events "$EVENTS" --rate "$SIM_RATE" >"$WORK/tidemark.log" 2>&1 &
  TM_PID=$!
  for ((i = 0; i < 1200; i++)); do
    kill -0 "$TM_PID" 2>/dev/null || { TM_PID=; die "tidemark demo exited during start-up"; }
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$TM_HTTP_PORT/readyz" 2>/dev/null &&
      pg_isready -q -h 127.0.0.1 -p "$TM_PG_PORT" && port_in_use "$TM_FLIGHT_PORT"; then
      return 0
    fi
    sleep 0.25
  done
  die "tidemark demo did not open its listeners within 300 s"
}

# waits until the simulator has published H (the live query then reads the Redis windows)
wait_for_windows() {
  local i
  for ((i = 0; i < 60; i++)); do
    curl -fsS "http://127.0.0.1:$TM_HTTP_PORT/v1/explain" -H 'content-type: application/json' \
      -d '{"sql": "SELECT country, count(*) FROM events WHERE event_time >= (now() AT TIME ZONE '\''UTC'\'') - interval '\''5 minutes'\'' GROUP BY country"}' |
      grep -q '"windows":"used:' && return 0
    sleep 0.5
  done
  log "warning: the live query does not use the Redis windows yet (see tidemark.log)"
}

stop_demo() {
  [[ -n $TM_PID ]] || return 0
  local i
  kill -INT "$TM_PID" 2>/dev/null || true # the demo stops on Ctrl-C
  for ((i = 0; i < 400; i++)); do
    kill -0 "$TM_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$TM_PID" 2>/dev/null || true
  wait "$TM_PID" 2>/dev/null || true
  TM_PID=
}

tm_status_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$TM_PID/status" 2>/dev/null; }

# ---------------------------------------------------------------- clients

# pgbench scripts (one SQL statement each: a transaction is a query) with weights, in -f order
write_pgbench_scripts() {
  local dir=$1
  mkdir -p "$dir"
  cat >"$dir/live_countries.sql" <<'SQL'
SELECT country, count(*) AS events, sum(amount) AS revenue FROM events WHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '5 minutes' GROUP BY country ORDER BY events DESC;
SQL
  cat >"$dir/daily_revenue.sql" <<'SQL'
SELECT date_trunc('day', event_time) AS day, count(*) AS orders, sum(amount) AS revenue FROM events WHERE page = '/checkout' AND event_time >= date_trunc('day', now() AT TIME ZONE 'UTC') - interval '6 days' GROUP BY 1 ORDER BY 1;
SQL
  cat >"$dir/events_per_minute.sql" <<'SQL'
SELECT date_trunc('minute', event_time) AS minute, count(*) AS event_count FROM events WHERE event_time >= now() AT TIME ZONE 'UTC' - interval '10 minutes' GROUP BY 1 ORDER BY 1;
SQL
  cat >"$dir/revenue_by_region.sql" <<'SQL'
SELECT c.region, count(*) AS orders, sum(e.amount) AS revenue FROM events e JOIN countries c ON c.code = e.country WHERE e.page = '/checkout' GROUP BY c.region ORDER BY revenue DESC;
SQL
  cat >"$dir/top_pages.sql" <<'SQL'
\set d random(1, 3)
SELECT page, count(*) AS views, avg(duration_ms) AS avg_duration_ms FROM events WHERE device = (ARRAY['mobile', 'desktop', 'tablet'])[:d] GROUP BY page ORDER BY views DESC, page LIMIT 10;
SQL
  cat >"$dir/country.sql" <<'SQL'
\set i random(1, 10)
SELECT code, name, region FROM countries WHERE code = (ARRAY['US', 'CA', 'BR', 'DE', 'GB', 'FR', 'NL', 'IN', 'JP', 'AU'])[:i];
SQL
  PGB_SCRIPTS=(live_countries@4 daily_revenue@2 events_per_minute@2 revenue_by_region@1 top_pages@1 country@1)
}

# pgbench_job DIR MODE CLIENTS SECONDS: one pgbench process (-j 1), per-transaction log
# DIR/pgb-MODE.<pid>, stdout DIR/pgbench-MODE.out, stderr (time-stamped) DIR/pgbench-MODE.err
pgbench_job() {
  local dir=$1 mode=$2 clients=$3 secs=$4 s i=0 args=() rc=0
  for s in "${PGB_SCRIPTS[@]}"; do
    args+=(-f "$SCRIPTS/${s%@*}.sql@${s#*@}")
    echo "$mode $i ${s%@*}" >>"$dir/pgbench-scripts.txt"
    i=$((i + 1))
  done
  ((PG_RATE > 0)) && args+=(--rate "$((clients * PG_RATE))")
  pgbench -n -h 127.0.0.1 -p "$TM_PG_PORT" -U postgres -c "$clients" -j 1 -T "$secs" -M "$mode" \
    -l --log-prefix "$dir/pgb-$mode" --progress "$SAMPLE_EVERY" --progress-timestamp "${args[@]}" tidemark \
    >"$dir/pgbench-$mode.out" 2> >(stamp >"$dir/pgbench-$mode.err") &
  echo $! >"$dir/pgbench-$mode.pid"
  wait $! || rc=$?
  echo "$mode $rc" >>"$dir/pgbench-exit.txt"
}

# start_clients DIR SECONDS START_EPOCH PG REST FLIGHT: launches every client kind; the Python
# clients wait for START_EPOCH themselves, pgbench is launched then
start_clients() {
  local dir=$1 secs=$2 start=$3 pg=$4 rest=$5 flight=$6 ext
  mkdir -p "$dir"
  if ((rest > 0)); then
    "$PY" "$CLIENTS_PY" rest --base "http://127.0.0.1:$TM_HTTP_PORT" --clients "$rest" \
      --duration "$secs" --start "$start" --interval "$REST_INTERVAL" --out "$dir/rest.csv" \
      2>"$dir/rest.err" &
    CLIENT_PIDS+=($!)
  fi
  if ((flight > 0)); then
    "$PY" "$CLIENTS_PY" flight --uri "grpc://127.0.0.1:$TM_FLIGHT_PORT" --clients "$flight" \
      --duration "$secs" --start "$start" --interval "$FLIGHT_INTERVAL" --out "$dir/flight.csv" \
      2>"$dir/flight.err" &
    CLIENT_PIDS+=($!)
  fi
  sleep_until "$start"
  ext=$((pg * PG_EXTENDED_CLIENTS / (PG_CLIENTS > 0 ? PG_CLIENTS : 1)))
  if ((pg - ext > 0)); then
    pgbench_job "$dir" simple "$((pg - ext))" "$secs" &
    CLIENT_PIDS+=($!)
  fi
  if ((ext > 0)); then
    pgbench_job "$dir" extended "$ext" "$secs" &
    CLIENT_PIDS+=($!)
  fi
}

# wait_clients DIR GRACE: waits for the clients of a phase, at most GRACE s past now; stops
# what still runs then
wait_clients() {
  local dir=$1 grace=$2 deadline p
  deadline=$(($(date +%s) + grace))
  for p in "${CLIENT_PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null && (($(date +%s) < deadline)); do sleep 0.5; done
    if kill -0 "$p" 2>/dev/null; then
      log "warning: client process $p still running ${grace} s after the end: stopping it"
      stop_clients "$dir" "$p"
    fi
    wait "$p" 2>/dev/null || true
  done
  CLIENT_PIDS=()
}

# stop_clients DIR PIDS...: stops the given client processes and the pgbench processes that
# pgbench_job started in DIR (by their recorded ids)
stop_clients() {
  local dir=$1 p f
  shift
  for f in "$dir"/pgbench-*.pid; do
    [[ -f $f ]] || continue
    p=$(cat "$f")
    if [[ $(cat "/proc/$p/comm" 2>/dev/null) == pgbench ]]; then kill "$p" 2>/dev/null || true; fi
  done
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
}

sleep_until() {
  local now
  now=$(date +%s.%N)
  awk -v t="$1" -v n="$now" 'BEGIN { exit !(t > n) }' && sleep "$(awk -v t="$1" -v n="$now" 'BEGIN { printf "%.3f", t - n }')"
  return 0
}

# ---------------------------------------------------------------- the run

warm_up() {
  ((WARMUP > 0)) || return 0
  log "warm-up: ${WARMUP} s of light load (not reported)"
  local start=$(($(date +%s) + 2))
  start_clients "$WORK/warmup" "$WARMUP" "$start" "$(min 8 "$PG_CLIENTS")" \
    "$(min 4 "$REST_CLIENTS")" "$(min 2 "$FLIGHT_CLIENTS")"
  wait_clients "$WORK/warmup" 90
}
min() { echo $(($1 < $2 ? $1 : $2)); }

# sample IDX: tidemark's VmRSS (KiB) and PostgreSQL's client backends into rss.tsv
sample() {
  local kib
  kib=$(tm_status_kib VmRSS)
  [[ -n $kib ]] || die "tidemark is gone (interval $1)"
  printf '%s %s %s\n' "$1" "$kib" "$(pg_backends)" >>"$WORK/rss.tsv"
  printf '%s' "$kib"
}

soak() {
  local n i at kib
  n=$(((DURATION + SAMPLE_EVERY - 1) / SAMPLE_EVERY))
  START=$(($(date +%s) + 3))
  log "soak: $PG_CLIENTS pgwire ($PG_EXTENDED_CLIENTS extended, $PG_RATE tps each$( ((PG_RATE == 0)) && echo ': flat out')), $REST_CLIENTS REST (every ${REST_INTERVAL} s), $FLIGHT_CLIENTS Flight (every ${FLIGHT_INTERVAL} s) for $DURATION s"
  sample 0 >/dev/null
  start_clients "$WORK" "$DURATION" "$START" "$PG_CLIENTS" "$REST_CLIENTS" "$FLIGHT_CLIENTS"
  for ((i = 1; i <= n; i++)); do
    at=$((START + (i * SAMPLE_EVERY < DURATION ? i * SAMPLE_EVERY : DURATION)))
    sleep_until "$at"
    kib=$(sample "$i")
    log "[$i/$n] $((at - START)) s: tidemark RSS $(awk -v k="$kib" 'BEGIN { printf "%.1f", k / 1024 }') MiB, PostgreSQL backends $(pg_backends)/$PG_MAX_CONNECTIONS, $(progress_errors) pgbench aborts so far"
  done
  HWM_KIB=$(tm_status_kib VmHWM)
  wait_clients "$WORK" 120
}

progress_errors() { cat "$WORK"/pgbench-*.err 2>/dev/null | grep -c 'aborted in command' || true; }

report() {
  local rc=0 out
  out=$("$PY" "$CLIENTS_PY" report --work "$WORK" --start "$START" --duration "$DURATION" \
    --every "$SAMPLE_EVERY" --hwm-kib "${HWM_KIB:-0}") || rc=$?
  REPORTED=1
  printf '%s\n' "$out"
  [[ -n $REPORT_FILE ]] && printf '%s\n' "$out" >"$REPORT_FILE"
  client_errors
  tidemark_warnings
  return "$rc"
}

# the first error lines of each client kind
client_errors() {
  local f
  for f in "$WORK"/rest.err "$WORK"/flight.err "$WORK"/pgbench-*.err; do
    [[ -f $f ]] || continue
    if grep -qvE '^([0-9]+ )?(progress:|REST: |Flight: )' "$f"; then
      printf '\n--- %s (first lines) ---\n' "$(basename "$f")"
      grep -vE '^([0-9]+ )?(progress:|REST: |Flight: )' "$f" | head -n 10
    fi
  done
}

# warnings and errors tidemark logged during the whole run, grouped by message
tidemark_warnings() {
  local lines
  lines=$(no_ansi <"$WORK/tidemark.log" | grep -E '^\S+\s+(WARN|ERROR) ' || true)
  if [[ -z $lines ]]; then
    printf '\ntidemark log: no WARN/ERROR lines\n'
    return 0
  fi
  printf '\ntidemark log: %s WARN/ERROR lines; by message:\n' "$(wc -l <<<"$lines")"
  sed -E 's/^\S+\s+//' <<<"$lines" | cut -c1-200 | sort | uniq -c | sort -rn | head -n 15
}

# ---------------------------------------------------------------- cleanup

WORK=
PG_DIR=
PG_STARTED=0
REPORTED=0
TM_PID=
REDIS_PID=
CLIENT_PIDS=()

cleanup() {
  local rc=$?
  set +e
  local p
  [[ -n $WORK ]] && stop_clients "$WORK/warmup" && stop_clients "$WORK" "${CLIENT_PIDS[@]}"
  for p in "${CLIENT_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  stop_demo
  [[ -n $REDIS_PID ]] && { kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; }
  stop_postgres
  # 1 means "some query failed" only once the report ran; any other failure is a 2
  [[ $rc -ne 0 && $rc -ne 130 && $REPORTED -ne 1 ]] && rc=2
  if [[ $rc -eq 2 && -n $WORK && -s $WORK/tidemark.log ]]; then
    printf '\n--- last lines of tidemark.log ---\n' >&2
    no_ansi <"$WORK/tidemark.log" | tail -n 30 >&2
  fi
  if [[ $KEEP_WORK == 1 && -n $WORK ]]; then
    [[ -n $PG_DIR && -f $PG_DIR/postgres.log ]] && cp "$PG_DIR/postgres.log" "$WORK/"
    log "logs kept in $WORK"
  else
    [[ -n $WORK ]] && rm -rf "$WORK"
  fi
  [[ -n $PG_DIR ]] && rm -rf "$PG_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

main() {
  check_knobs
  check_tools
  pick_ports
  WORK=$(mktemp -d /tmp/tidemark-soak.XXXXXX)
  SCRIPTS=$WORK/scripts
  write_pgbench_scripts "$SCRIPTS"
  start_postgres
  start_redis
  start_demo
  wait_for_windows
  warm_up
  soak
  report
}

main "$@"
