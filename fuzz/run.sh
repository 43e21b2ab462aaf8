#!/usr/bin/env bash
# Runs the cargo-fuzz targets (sql, select, pgwire) for SECONDS each (default 30: the short run
# CI does; use e.g. SECONDS_EACH=3600 for a long one). Needs the nightly toolchain and
# cargo-fuzz (installed here when missing). Crashes are kept in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh                      # 30 s per target
#   SECONDS_EACH=1800 fuzz/run.sh    # half an hour per target
#   fuzz/run.sh pgwire               # one target
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_EACH=${SECONDS_EACH:-30}
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(sql select pgwire)

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
for t in "${targets[@]}"; do
  echo "==> fuzzing $t for ${SECONDS_EACH}s"
  mkdir -p "fuzz/corpus/$t"
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 \
    -max_len=4096 2>&1 | tail -n 5
done
