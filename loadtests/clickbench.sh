#!/usr/bin/env bash
# ClickBench's 43 PostgreSQL queries over a logical `hits` table split into a batch and a speed
# table at W, caches off: each query's time through tidemark (REST; pgwire beside it) vs the same
# query on one table holding every event once (`hits_all`) and vs PostgreSQL's own union view
# (`hits`, made by `tidemark setup`). Both layer tables hold wrong-side copies (the batch table
# the first hours after W, the speed table the hours before it) that the watermark must drop.
# A benchmark, not a test: it prints a markdown table and exits 0 whether or not targets are met.
#
# The schema and the queries are read from a checkout of https://github.com/ClickHouse/ClickBench
# (postgresql/create.sql, postgresql/queries.sql) given by the user; the rows are generated.
#
#   loadtests/clickbench.sh ~/src/ClickBench
#   ROWS=1000000 RUNS=5 loadtests/clickbench.sh ~/src/ClickBench
#   BIN=/tmp/old/tidemark loadtests/clickbench.sh ~/src/ClickBench   # another build, no cargo
set -euo pipefail
CLICKBENCH=${1:-${CLICKBENCH:-}}
[[ -n $CLICKBENCH ]] || { echo "usage: loadtests/clickbench.sh PATH_TO_CLICKBENCH_CHECKOUT" >&2; exit 2; }
CLICKBENCH=$(cd "$CLICKBENCH" && pwd)
[[ -f $CLICKBENCH/postgresql/queries.sql && -f $CLICKBENCH/postgresql/create.sql ]] ||
  { echo "error: $CLICKBENCH has no postgresql/queries.sql and create.sql (a ClickBench checkout?)" >&2; exit 2; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_python

ROWS=${ROWS:-300000}
RUNS=${RUNS:-3}
TM_HTTP_PORT=${TM_HTTP_PORT:-24470}
TM_PG_PORT=${TM_PG_PORT:-24471}
DB=tidemark_clickbench
bench_bin

bench_log "generating $ROWS hits rows into $DB"
fresh_db "$DB"
.venv/bin/python loadtests/clickbench.py load --clickbench "$CLICKBENCH" \
  --pg "postgresql://postgres@127.0.0.1:5432/$DB" --rows "$ROWS"

cat >"$BENCH_WORK/tidemark.toml" <<TOML
[listen]
http = "127.0.0.1:$TM_HTTP_PORT"
pg = "127.0.0.1:$TM_PG_PORT"
[warehouse]
url = "postgres://postgres@127.0.0.1:5432/$DB"
[cache]
enabled = false
[[tables]]
name = "hits"
time_column = "eventtime"
batch_table = "hits_batch"
speed_table = "hits_speed"
TOML
start_tidemark "$BENCH_WORK/tidemark.toml" "$TM_HTTP_PORT"
bench_log "running the $(grep -c . "$CLICKBENCH/postgresql/queries.sql") queries, $RUNS rounds (one table, union view, tidemark REST, tidemark pgwire)"
.venv/bin/python loadtests/clickbench.py run --clickbench "$CLICKBENCH" --rows "$ROWS" --runs "$RUNS" \
  --pg "postgresql://postgres@127.0.0.1:5432/$DB" --rest "http://127.0.0.1:$TM_HTTP_PORT" \
  --tm-pg "postgresql://postgres@127.0.0.1:$TM_PG_PORT/$DB"
