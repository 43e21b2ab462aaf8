#!/usr/bin/env bash
# pgbench through tidemark's PostgreSQL wire protocol vs directly against PostgreSQL and vs
# PgBouncer (transaction pooling, the same hop to PostgreSQL as tidemark's), in one run: a
# pass-through point query on a dimension table and a split aggregate over the logical
# table, at 1 and 16 clients. Prints throughput ratios and latencies (a benchmark, not a
# test: nothing here asserts on timing).
#
#   loadtests/pgbench.sh            # 10 s per run
#   DURATION=30 loadtests/pgbench.sh
#   HOP=tcp loadtests/pgbench.sh    # tidemark reaches PostgreSQL over TCP loopback
#   BIN=/tmp/old/tidemark loadtests/pgbench.sh   # another build (no cargo build)
#   TIDEMARK_EXTRA=$'[console]\nrecent = 0' loadtests/pgbench.sh   # more configuration
#
# pgbench always reaches the servers over TCP. tidemark's (and PgBouncer's) hop to PostgreSQL uses the
# Unix socket when there is one (HOP=unix, the default then), as a gateway on the database
# host would; HOP=tcp measures the loopback TCP hop instead (the kernel's TCP path costs
# more than the gateway itself on two cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/services.sh
ensure_services

DURATION=${DURATION:-10}
DB=tidemark_bench
SOCKDIR=/var/run/postgresql
if [[ -z ${HOP:-} ]]; then
  HOP=$([[ -S $SOCKDIR/.s.PGSQL.5432 ]] && echo unix || echo tcp)
fi
if [[ $HOP == unix ]]; then
  PGURL="host=$SOCKDIR port=5432 user=postgres dbname=$DB"
  PGB_HOST=$SOCKDIR
else
  # no TLS on the hop, as PgBouncer's default (server_tls_sslmode = disable); libpq's
  # default (prefer) would encrypt tidemark's hop and not PgBouncer's
  PGURL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
  PGB_HOST=127.0.0.1
fi
echo "==> tidemark reaches PostgreSQL over: $HOP"
PORT=${PORT:-55439}
PGB_PORT=${PGB_PORT:-55438}
WORK=$(mktemp -d)
# PgBouncer runs as postgres when we are root: it reads its config and writes its log here
chmod 755 "$WORK"
if [[ $(id -u) -eq 0 ]]; then chown postgres "$WORK"; fi
stop_all() {
  kill "${TM_PID:-0}" 2>/dev/null || true
  [[ -f $WORK/pgbouncer.pid ]] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop_all EXIT
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
if [[ ! -x $PGBOUNCER ]]; then
  echo "==> installing pgbouncer with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pgbouncer >/dev/null
fi

if [[ -z ${BIN:-} ]]; then
  cargo build --release -q
  BIN=target/release/tidemark
fi

echo "==> preparing $DB"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql -q -h 127.0.0.1 -U postgres -d "$DB" <<'SQL'
CREATE TABLE dim (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO dim SELECT g, 'name ' || g FROM generate_series(1, 10000) g;
CREATE TABLE events_batch (id bigint, event_time timestamp, country text, amount numeric(12,2));
CREATE TABLE events_speed (LIKE events_batch);
INSERT INTO events_batch SELECT g, timestamp '2026-01-01' + g * interval '1 second',
  (ARRAY['DE','FR','US','GB','JP','BR','IN','AU'])[1 + g % 8], (g % 10000) / 100.0
  FROM generate_series(1, 200000) g;
INSERT INTO events_speed SELECT g, timestamp '2026-01-01' + g * interval '1 second',
  (ARRAY['DE','FR','US','GB','JP','BR','IN','AU'])[1 + g % 8], (g % 10000) / 100.0
  FROM generate_series(195001, 205000) g;
CREATE TABLE tidemark_watermarks (table_name text PRIMARY KEY, batch_watermark timestamp, updated_at timestamptz DEFAULT now());
INSERT INTO tidemark_watermarks VALUES ('events', timestamp '2026-01-01' + 200001 * interval '1 second');
ANALYZE;
SQL

cat > "$WORK/tidemark.toml" <<TOML
[listen]
pg = "127.0.0.1:$PORT"
[warehouse]
url = "$PGURL"
pool_size = 24
[[tables]]
name = "events"
time_column = "event_time"
batch_table = "events_batch"
speed_table = "events_speed"
${TIDEMARK_EXTRA:-}
TOML
$BIN setup --config "$WORK/tidemark.toml" >/dev/null
RUST_LOG=warn $BIN serve --config "$WORK/tidemark.toml" &
TM_PID=$!
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$PORT" && break; sleep 0.1; done

# PgBouncer as people run it in front of PostgreSQL: transaction pooling, the same pool size
# and hop as tidemark's; it refuses to run as root, so it runs as postgres.
echo '"postgres" ""' >"$WORK/userlist.txt"
cat >"$WORK/pgbouncer.ini" <<INI
[databases]
$DB = host=$PGB_HOST port=5432 dbname=$DB user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 24
max_client_conn = 100
pidfile = $WORK/pgbouncer.pid
logfile = $WORK/pgbouncer.log
INI
chmod 644 "$WORK"/pgbouncer.ini "$WORK"/userlist.txt
if [[ $(id -u) -eq 0 ]]; then
  "$PGBOUNCER" -d -u postgres "$WORK/pgbouncer.ini"
else
  "$PGBOUNCER" -d "$WORK/pgbouncer.ini"
fi
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p "$PGB_PORT" && break; sleep 0.1; done
pg_isready -q -h 127.0.0.1 -p "$PGB_PORT" || { cat "$WORK/pgbouncer.log" >&2; echo "PgBouncer did not start" >&2; exit 1; }

cat > "$WORK/point.sql" <<'SQL'
\set id random(1, 10000)
SELECT name FROM dim WHERE id = :id;
SQL
cat > "$WORK/split.sql" <<'SQL'
SELECT country, count(*), sum(amount) FROM events GROUP BY country;
SQL

# run NAME SCRIPT CLIENTS PORT -> "tps latency_ms"
run() {
  local out
  out=$(pgbench -n -h 127.0.0.1 -p "$4" -U postgres -c "$3" -j "$(( $3 < 2 ? 1 : 2 ))" -T "$DURATION" \
    -f "$2" "$DB" 2>&1)
  local tps lat
  tps=$(grep -Eo 'tps = [0-9.]+' <<<"$out" | head -1 | awk '{print $3}')
  lat=$(grep -Eo 'latency average = [0-9.]+' <<<"$out" | awk '{print $4}')
  echo "$tps $lat"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
printf '\n| query | clients | direct tps | PgBouncer tps | tidemark tps | tidemark / direct | tidemark / PgBouncer | direct latency ms | PgBouncer added ms | tidemark added ms |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for q in point split; do
  for c in 1 16; do
    read -r dt dl < <(run "$q" "$WORK/$q.sql" "$c" 5432)
    read -r bt bl < <(run "$q" "$WORK/$q.sql" "$c" "$PGB_PORT")
    read -r tt tl < <(run "$q" "$WORK/$q.sql" "$c" "$PORT")
    name=$([[ $q == point ]] && echo "pass-through point query (dimension table)" || echo "split aggregate (events, GROUP BY country)")
    printf '| %s | %s | %.0f | %.0f | %.0f | %s | %s | %.3f | %s | %s |\n' "$name" "$c" "$dt" "$bt" "$tt" \
      "$(ratio "$tt" "$dt")" "$(ratio "$tt" "$bt")" "$dl" "$(added "$bl" "$dl")" "$(added "$tl" "$dl")"
  done
done
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
