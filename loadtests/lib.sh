# Shared set-up of the benchmarks under loadtests/ (sourced, not run): the services, the
# tidemark binary, a scratch database and one `tidemark serve` in the background.
#
#   source loadtests/lib.sh      # cds to the checkout, starts PostgreSQL and Redis if needed
#   bench_python                 # the .venv with the Python clients (scripts/clients.sh)
#   bench_bin                    # BIN: $BIN if set (another build, no cargo), else a release build
#   fresh_db NAME                # drops and creates database NAME (dropped again on exit)
#   start_tidemark CONFIG PORT   # tidemark setup + serve; waits (bounded) until PORT answers
#   stop_tidemarks               # stops every tidemark started so far
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/services.sh
ensure_services

BENCH_WORK=$(mktemp -d)
BENCH_DBS=()
TM_PID=
TM_PIDS=()

bench_log() { printf '==> %s\n' "$*" >&2; }
bench_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

stop_tidemarks() {
  local pid
  for pid in "${TM_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  TM_PIDS=()
  TM_PID=
}

bench_cleanup() {
  local db
  stop_tidemarks
  for db in "${BENCH_DBS[@]}"; do
    psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$BENCH_WORK"
}
trap bench_cleanup EXIT

bench_python() {
  source scripts/clients.sh
  ensure_python_client
}

bench_bin() {
  if [[ -z ${BIN:-} ]]; then
    cargo build --release -q
    BIN=target/release/tidemark
  fi
  [[ -x $BIN ]] || bench_die "$BIN not found"
}

fresh_db() {
  psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
  BENCH_DBS+=("$1")
}

start_tidemark() {
  local config=$1 port=$2
  # another server on the port would answer in tidemark's place
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || bench_die "port $port is already in use"
  "$BIN" setup --config "$config" >"$BENCH_WORK/setup.log" 2>&1 ||
    { cat "$BENCH_WORK/setup.log" >&2; bench_die "tidemark setup failed"; }
  RUST_LOG=${RUST_LOG:-warn} "$BIN" serve --config "$config" >"$BENCH_WORK/tidemark-$port.log" 2>&1 &
  TM_PID=$!
  TM_PIDS+=("$TM_PID")
  for _ in $(seq 300); do
    kill -0 "$TM_PID" 2>/dev/null || { tail -n 30 "$BENCH_WORK/tidemark-$port.log" >&2; bench_die "tidemark exited during start-up"; }
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  bench_die "tidemark did not open 127.0.0.1:$port within 30 s"
}
