#!/usr/bin/env bash
# The fleet benchmark (issue 19): what a W move costs the warehouse, and how long the first
# dashboard refresh after it takes, for one replica and for three replicas without and with
# the shared cache, in one run; then the capacity model of docs/scale.md checked against 1 to
# 4 replicas. A benchmark, not a test: it prints its tables and exits 0 whatever they say.
#
# Data: events_batch / events_speed (BATCH_ROWS over 30 days, SPEED_ROWS over the last 3 h),
# the batch and speed tables overlapping from W_START on, so W may move forward MOVES times
# by STEP minutes and every answer stays exactly once. Each configuration gets its own Redis
# (an empty cache), replicas on consecutive ports from PORT, CLIENTS dashboard clients spread
# over them, and the dashboard of loadtests/fleet_mix.json.
#
#   loadtests/fleet.sh                       # builds (release), loads (~1 min), runs (~5 min)
#   MOVES=3 CLIENTS=10 loadtests/fleet.sh    # shorter
#   BIN=path/to/tidemark loadtests/fleet.sh  # another build
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BATCH_ROWS=${BATCH_ROWS:-2000000}
SPEED_ROWS=${SPEED_ROWS:-60000}
MOVES=${MOVES:-5}
STEP=${STEP:-10}
CLIENTS=${CLIENTS:-30}
RATE=${RATE:-60}
STEADY=${STEADY:-20}
PORT=${PORT:-55600}
DB=tidemark_fleet_bench
PGURL="postgres://postgres@127.0.0.1:5432/$DB"
MIX=loadtests/fleet_mix.json

bench_python
bench_bin
fresh_db "$DB"
bench_log "loading $BATCH_ROWS batch rows and $SPEED_ROWS speed rows"
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d "$DB" <<SQL
CREATE TABLE events_batch (event_id bigint, event_time timestamp, country text, device text, amount numeric(12,2));
CREATE TABLE events_speed (LIKE events_batch);
CREATE TABLE bench_now AS SELECT date_trunc('minute', now() AT TIME ZONE 'UTC') AS t0;
-- batch: 30 days up to t0 - 30 min; speed: t0 - 3 h up to t0 (the overlap is where W moves)
INSERT INTO events_batch SELECT g, (SELECT t0 FROM bench_now) - interval '30 minutes' - (g * interval '30 days' / $BATCH_ROWS),
  (ARRAY['US','DE','FR','GB','JP','BR','IN','AU','CA','ZZ'])[1 + g % 10], (ARRAY['ios','android','web'])[1 + g % 3],
  CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 10000) / 100.0 END
  FROM generate_series(1, $BATCH_ROWS) g;
INSERT INTO events_speed SELECT -g, (SELECT t0 FROM bench_now) - (g * interval '3 hours' / $SPEED_ROWS),
  (ARRAY['US','DE','FR','GB','JP','BR','IN','AU','CA','ZZ'])[1 + g % 10], (ARRAY['ios','android','web'])[1 + g % 3],
  (g % 10000) / 100.0
  FROM generate_series(1, $SPEED_ROWS) g;
INSERT INTO events_batch SELECT * FROM events_speed WHERE event_time < (SELECT t0 FROM bench_now) - interval '30 minutes';
-- what a Redshift sort key on the time column gives: cheap time-range scans (chunks)
CREATE INDEX ON events_batch (event_time);
CREATE INDEX ON events_speed (event_time);
ANALYZE;
SQL
W_START=$(psql -X -Atq -h 127.0.0.1 -U postgres -d "$DB" -c "SELECT t0 - interval '3 hours' FROM bench_now")

# config FILE HTTP_PORT REDIS_URL SHARED
config() {
  cat >"$1" <<TOML
[listen]
http = "127.0.0.1:$2"
[warehouse]
url = "$PGURL"
pool_size = 8
watermark_poll = "1s"
[redis]
url = "$3"
[cache]
shared = $4
[[tables]]
name = "events"
time_column = "event_time"
batch_table = "events_batch"
speed_table = "events_speed"
TOML
}

reset_w() {
  psql -X -q -h 127.0.0.1 -U postgres -d "$DB" -c \
    "UPDATE tidemark_watermarks SET batch_watermark = '$W_START', updated_at = now()" >/dev/null
}

# run LABEL REPLICAS SHARED [MOVES]: one configuration, its own Redis, one JSON line out
run() {
  local label=$1 n=$2 shared=$3 moves=${4:-$MOVES} rport urls=() i
  rport=$((PORT + 90))
  redis-server --port "$rport" --save "" --appendonly no --daemonize yes \
    --pidfile "$BENCH_WORK/redis-$rport.pid" --logfile "$BENCH_WORK/redis-$rport.log" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  reset_w
  for i in $(seq 0 $((n - 1))); do
    config "$BENCH_WORK/r$i.toml" $((PORT + i)) "redis://127.0.0.1:$rport" "$shared"
    start_tidemark "$BENCH_WORK/r$i.toml" $((PORT + i))
    urls+=("http://127.0.0.1:$((PORT + i))")
  done
  bench_log "$label: $n replica(s), shared cache $shared, $moves W moves, $CLIENTS clients"
  "$PY" loadtests/fleet.py run "$label" "$(IFS=,; echo "${urls[*]}")" --db "$PGURL" --mix "$MIX" \
    --moves "$moves" --clients "$CLIENTS" --step-min "$STEP" --w-start "$W_START" --redis-port "$rport" \
    | tee -a "$BENCH_WORK/results.jsonl"
  if [[ $label == model-* ]]; then
    bench_log "$label: steady load, $RATE requests/s for $STEADY s"
    "$PY" loadtests/fleet.py steady "steady-$n" "$(IFS=,; echo "${urls[*]}")" --mix "$MIX" \
      --rate "$RATE" --seconds "$STEADY" | tee -a "$BENCH_WORK/results.jsonl"
  fi
  stop_tidemarks
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
}

PY=.venv/bin/python
config "$BENCH_WORK/setup.toml" "$PORT" "redis://127.0.0.1:1" false
"$BIN" setup --config "$BENCH_WORK/setup.toml" >/dev/null
run one 1 true
run three-alone 3 false
run three-shared 3 true
for n in 1 2 3 4; do run "model-$n" "$n" true 3; done
"$PY" - "$BENCH_WORK/results.jsonl" "$MIX" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mix = json.load(open(sys.argv[2]))["queries"]
by = {r["label"]: r for r in rows}
one = by["one"]["batch_statements_per_move"]
print("\n| fleet | batch statements per W move | / one replica | fringe statements | all warehouse statements | first refresh p50 ms | p99 ms |")
print("|---|---|---|---|---|---|---|")
for label, name in [("one", "1 replica"), ("three-alone", "3 replicas, no shared cache"), ("three-shared", "3 replicas, shared cache")]:
    r = by[label]
    print(f"| {name} | {r['batch_statements_per_move']:.1f} | {r['batch_statements_per_move'] / one:.2f} | {r['fringe_statements_per_move']:.1f} | {r['warehouse_statements_per_move']:.1f} | {r['first_refresh_p50_ms']:.0f} | {r['first_refresh_p99_ms']:.0f} |")
r = by["three-shared"]
print(f"\nshared cache, 3 replicas: {r['redis_keys']} keys, {r['redis_used_memory'] / 2**20:.1f} MiB in Redis; per W move {r['redis_commands_per_move']:.0f} Redis commands, {r['redis_bytes_per_move'] / 2**10:.0f} KiB through its network")
legs = sum(q["batch_statements"] for q in mix)
print(f"\nmodel: with the shared cache a W move costs {legs} batch statements whatever the fleet's size; without it, {legs} per replica")
print("| replicas | batch statements per W move: model | measured | speed statements/s at RATE req/s: model | measured |")
print("|---|---|---|---|---|")
for n in (1, 2, 3, 4):
    r, st = by[f"model-{n}"], by[f"steady-{n}"]
    print(f"| {n} | {legs} | {r['batch_statements_per_move']:.1f} | {st['model_speed_statements_per_s']:.1f} | {st['speed_statements_per_s']:.1f} |")
PY
