#!/usr/bin/env bash
# The project's test command: makes sure PostgreSQL, Redis and a Redis Cluster (7101-7103) run,
# then fmt, clippy and tests.
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh differential -- --nocapture`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh
ensure_services
ensure_redis_cluster
source scripts/clients.sh && ensure_clients

svc_log "cargo fmt --check"
cargo fmt --check
svc_log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
svc_log "cargo test $*"
cargo test "$@"
if [[ $# -eq 0 ]]; then
  svc_log "fuzz targets, ${FUZZ_SECONDS:-20} s each (fuzz/run.sh)"
  SECONDS_EACH=${FUZZ_SECONDS:-20} bash fuzz/run.sh
fi
