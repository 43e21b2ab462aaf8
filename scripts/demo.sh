#!/usr/bin/env bash
# One command for a newcomer: makes sure PostgreSQL and Redis run, builds tidemark and starts
# `tidemark demo` (arguments are passed on, e.g. `scripts/demo.sh --reset`). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh
ensure_services

svc_log "cargo build --release"
cargo build --release
svc_log "target/release/tidemark demo $*"
exec target/release/tidemark demo "$@"
