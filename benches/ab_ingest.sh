#!/usr/bin/env bash
# A/B of the ingest benchmark: this build against another llmwatch binary (e.g. an older commit
# built elsewhere), on the backfill (14 days) and live (10 minutes) windows, back to back.
#   OTHER_BIN=/path/to/llmwatch bash benches/ab_ingest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OTHER_BIN:?set OTHER_BIN to the llmwatch binary of the other build}"
for span in 1209600 600; do
  for build in current other; do
    echo "=== $build, window ${span}s"
    if [ "$build" = other ]; then export BENCH_LLMWATCH_BIN="$OTHER_BIN"; else unset BENCH_LLMWATCH_BIN; fi
    BENCH_SPAN_S=$span cargo bench --bench ingest 2>&1 | sed -n '/## llmwatch ingest benchmark/,$p'
  done
done
