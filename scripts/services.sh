#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and Redis (127.0.0.1:6379)
# are installed and running. Sourced by scripts/test.sh and scripts/demo.sh; can also be run
# on its own: `bash scripts/services.sh`. Idempotent and quick when both already answer.
# `ensure_redis_cluster` (called by scripts/test.sh) also runs a three-master Redis Cluster on
# 127.0.0.1:7101-7103 and exports TIDEMARK_TEST_REDIS_CLUSTER for tests/windows.rs.

PG_HOST=127.0.0.1
PG_PORT=5432
PG_CLUSTER=main
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
SERVICE_WAIT_SECS=${SERVICE_WAIT_SECS:-30}

svc_log() { printf '==> %s\n' "$*" >&2; }
svc_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo when it works.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    svc_die "need root (or password-less sudo) to run: $*"
  fi
}

# Installs PostgreSQL, Redis and openssl (the TLS tests make their certificates with it) with
# apt-get when their programs are missing.
svc_install_missing() {
  local need=()
  command -v pg_isready >/dev/null 2>&1 || need+=(postgresql-client)
  command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
  command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || need+=(redis-server)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  [[ ${#need[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null 2>&1 || svc_die "missing ${need[*]} and no apt-get to install them"
  svc_log "installing postgresql postgresql-client redis-server openssl with apt-get"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    postgresql postgresql-client redis-server openssl
}

pg_answers() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
pg_login_works() { psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; }
redis_answers() { [[ $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

# Waits (bounded) until the given check succeeds; fails loudly otherwise.
svc_wait_for() {
  local what=$1 check=$2 i
  for ((i = 0; i < SERVICE_WAIT_SECS * 2; i++)); do
    "$check" && return 0
    sleep 0.5
  done
  svc_die "$what did not come up within ${SERVICE_WAIT_SECS}s"
}

# Newest installed PostgreSQL major version.
pg_version() {
  ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1
}

# Puts `host all all 127.0.0.1/32 trust` first in pg_hba.conf unless it is already there;
# sets HBA_CHANGED=1 when it edited the file.
pg_trust_localhost() {
  local hba=$1
  HBA_CHANGED=0
  if ! as_root grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    svc_log "adding trust for 127.0.0.1 to $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    HBA_CHANGED=1
  fi
}

# True when the Debian cluster $PG_CLUSTER of PostgreSQL <version> is running.
pg_cluster_online() {
  pg_lsclusters -h "$1" "$PG_CLUSTER" 2>/dev/null | awk '{print $4}' | grep -q '^online'
}

# Creates the cluster if needed, trusts 127.0.0.1 and starts (or reloads) PostgreSQL.
svc_start_postgres() {
  local ver
  ver=$(pg_version)
  [[ -n $ver ]] || svc_die "no PostgreSQL server installed under /usr/lib/postgresql"
  if [[ ! -d /etc/postgresql/$ver/$PG_CLUSTER ]]; then
    svc_log "creating PostgreSQL $ver cluster $PG_CLUSTER on port $PG_PORT"
    as_root pg_createcluster --port "$PG_PORT" "$ver" "$PG_CLUSTER"
  fi
  pg_trust_localhost "/etc/postgresql/$ver/$PG_CLUSTER/pg_hba.conf"
  if pg_cluster_online "$ver"; then
    if [[ $HBA_CHANGED -eq 1 ]]; then
      svc_log "reloading PostgreSQL $ver cluster $PG_CLUSTER"
      as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" reload
    fi
  else
    svc_log "starting PostgreSQL $ver cluster $PG_CLUSTER"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" start
  fi
}

# Ensures PostgreSQL answers on 127.0.0.1:5432 and lets user postgres in without a password.
ensure_postgres() {
  if pg_answers && pg_login_works; then
    svc_log "PostgreSQL is running on $PG_HOST:$PG_PORT"
    return 0
  fi
  svc_start_postgres
  svc_wait_for "PostgreSQL on $PG_HOST:$PG_PORT" pg_answers
  svc_wait_for "PostgreSQL login as postgres (trust) on $PG_HOST:$PG_PORT" pg_login_works
  svc_log "PostgreSQL is running on $PG_HOST:$PG_PORT"
}

# Ensures Redis answers PONG on 127.0.0.1:6379.
ensure_redis() {
  if redis_answers; then
    svc_log "Redis is running on $REDIS_HOST:$REDIS_PORT"
    return 0
  fi
  svc_log "starting Redis on $REDIS_HOST:$REDIS_PORT"
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
    --save "" --appendonly no --dir /tmp
  svc_wait_for "Redis on $REDIS_HOST:$REDIS_PORT" redis_answers
  svc_log "Redis is running on $REDIS_HOST:$REDIS_PORT"
}

# A three-master Redis Cluster on 127.0.0.1:7101-7103 for the windows cluster test
# (tests/windows.rs); its state lives under $REDIS_CLUSTER_DIR.
REDIS_CLUSTER_PORTS=(7101 7102 7103)
REDIS_CLUSTER_DIR=${REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/tidemark-redis-cluster}

redis_node_answers() { [[ $(redis-cli -h "$REDIS_HOST" -p "$1" ping 2>/dev/null) == PONG ]]; }

# `redis-cli cluster info` field $2 of the node on port $1 (empty when it does not answer).
redis_cluster_field() {
  redis-cli -h "$REDIS_HOST" -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

redis_cluster_ok() {
  local p
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    [[ $(redis_cluster_field "$p" cluster_state) == ok ]] || return 1
  done
}

redis_cluster_nodes_answer() {
  local p
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do redis_node_answers "$p" || return 1; done
}

# True when every node knows all three and all slots are assigned (a cluster that only
# needs a moment to agree again, e.g. after its nodes were restarted from nodes-*.conf).
redis_cluster_formed() {
  local p
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    [[ $(redis_cluster_field "$p" cluster_known_nodes) == "${#REDIS_CLUSTER_PORTS[@]}" ]] || return 1
    [[ $(redis_cluster_field "$p" cluster_slots_assigned) == 16384 ]] || return 1
  done
}

# Waits up to $1 seconds for cluster_state:ok on every node.
redis_cluster_wait_ok() {
  local i
  for ((i = 0; i < $1 * 2; i++)); do
    redis_cluster_ok && return 0
    sleep 0.5
  done
  return 1
}

# Ensures the cluster answers with cluster_state:ok (starting and creating it when needed) and
# exports TIDEMARK_TEST_REDIS_CLUSTER with its seed URLs. Idempotent.
ensure_redis_cluster() {
  local p hostports=()
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do hostports+=("$REDIS_HOST:$p"); done
  export TIDEMARK_TEST_REDIS_CLUSTER="redis://$REDIS_HOST:7101,redis://$REDIS_HOST:7102,redis://$REDIS_HOST:7103"
  if redis_cluster_ok; then
    svc_log "Redis Cluster is running on ${hostports[*]}"
    return 0
  fi
  mkdir -p "$REDIS_CLUSTER_DIR"
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    redis_node_answers "$p" && continue
    svc_log "starting Redis Cluster node on $REDIS_HOST:$p (state in $REDIS_CLUSTER_DIR)"
    redis-server --daemonize yes --bind "$REDIS_HOST" --port "$p" \
      --cluster-enabled yes --cluster-config-file "$REDIS_CLUSTER_DIR/nodes-$p.conf" \
      --cluster-node-timeout 5000 --dir "$REDIS_CLUSTER_DIR" --save "" --appendonly no \
      --logfile "$REDIS_CLUSTER_DIR/redis-$p.log" --pidfile "$REDIS_CLUSTER_DIR/redis-$p.pid"
  done
  svc_wait_for "Redis Cluster nodes on ${hostports[*]}" redis_cluster_nodes_answer
  if redis_cluster_formed && redis_cluster_wait_ok 10; then
    svc_log "Redis Cluster is running on ${hostports[*]}"
    return 0
  fi
  svc_log "creating the Redis Cluster on ${hostports[*]}"
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    redis-cli -h "$REDIS_HOST" -p "$p" flushall >/dev/null 2>&1 || true
    redis-cli -h "$REDIS_HOST" -p "$p" cluster reset hard >/dev/null 2>&1 || true
  done
  redis-cli --cluster create "${hostports[@]}" --cluster-replicas 0 --cluster-yes >/dev/null ||
    svc_die "redis-cli --cluster create ${hostports[*]} failed"
  redis_cluster_wait_ok "$SERVICE_WAIT_SECS" ||
    svc_die "the Redis Cluster on ${hostports[*]} did not reach cluster_state:ok within ${SERVICE_WAIT_SECS}s"
  svc_log "Redis Cluster is running on ${hostports[*]}"
}

# Installs what is missing, then makes sure both services run.
ensure_services() {
  svc_install_missing
  ensure_postgres
  ensure_redis
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  ensure_services
fi
