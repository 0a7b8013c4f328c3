#!/usr/bin/env bash
# Interop suite: llmwatch against independent programs that judge it.
#  - sqlite3 (Debian's CLI): recomputes totals and exact percentiles from the raw rows llmwatch
#    stored and compares them with what the HTTP API and the CLI report (rollups and sketches),
#    after a SIGKILL and a restart.
#  - promtool (Debian's prometheus package): lints the /metrics exposition.
#  - interop/otlp.sh: the OpenTelemetry Python SDK and the openai-v2 instrumentation export
#    traces to llmwatch; the API must show the tokens, cost, stages they imply.
#  - interop/email.sh: a real SMTP server (aiosmtpd) receives `llmwatch alerts test` e-mails
#    over STARTTLS and implicit TLS with AUTH.
#  - interop/proxy.sh: the official openai and anthropic Python SDKs call through the recording
#    proxy; the recorded requests are checked through the API.
#  - interop/dashboard.sh: Debian's chromium, driven by playwright-core, loads every dashboard
#    page against demo data (no console error, no failed request, charts drawn, filters in the
#    URL, a request's detail) and saves screenshots under target/screenshots/.
# Installs what it needs (CI starts from a clean machine).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v sqlite3 >/dev/null || need_apt+=(sqlite3)
command -v curl >/dev/null || need_apt+=(curl)
command -v jq >/dev/null || need_apt+=(jq)
command -v promtool >/dev/null || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/llmwatch"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

pass=0; fail=0
check() { # name, expected, actual
  if [ "$2" = "$3" ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1: expected $2, got $3"; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # db port
  LLMWATCH_LOG=warn "$bin" serve --db "$1" --listen "127.0.0.1:$2" --config "$work/llmwatch.toml" & pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$2/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "server did not start"; exit 1
}

cat >"$work/llmwatch.toml" <<'TOML'
timezone = "Asia/Seoul"
capture_content = true
[[pricing]]
model = "acme-ft"
input = 1.0
output = 2.0
[[budgets]]
name = "monthly"
period = "month"
limit_usd = 1000.0
TOML

# 1. Generate realistic traffic with the demo generator (one day, Seoul time) as NDJSON.
"$bin" demo --no-serve --days 3 --per-day 4000 --seed 7 --db "$work/gen.db" >/dev/null 2>&1
sqlite3 -json "$work/gen.db" "SELECT request_id, ts_ms AS timestamp, model, provider, input_tokens, output_tokens,
  cached_input_tokens, cache_write_tokens, reasoning_tokens, user_id, feature, session_id, release, status,
  error_type, duration_ms, ttft_ms, input, output FROM requests ORDER BY ts_ms" \
  | jq -c '.[] | with_entries(select(.value != null))' >"$work/events.jsonl"
n_events=$(wc -l <"$work/events.jsonl")
echo "generated $n_events events"

# 2. Ingest them through the CLI (twice: idempotent), SIGKILL, restart.
port=$(free_port)
start "$work/db.sqlite" "$port"
"$bin" ingest "$work/events.jsonl" --server "http://127.0.0.1:$port" >/dev/null 2>&1
"$bin" ingest "$work/events.jsonl" --server "http://127.0.0.1:$port" >/dev/null 2>&1
kill -9 "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
port=$(free_port)
start "$work/db.sqlite" "$port"
url="http://127.0.0.1:$port"

# 3. Independent totals from raw rows (sqlite3) vs llmwatch's rollup-based reports.
check "stored rows = events sent (idempotent re-send)" "$n_events" "$(sqlite3 "$work/db.sqlite" 'SELECT COUNT(*) FROM requests')"
day=$(sqlite3 "$work/db.sqlite" "SELECT date(ts_ms/1000, 'unixepoch', '+9 hours') d FROM requests GROUP BY d ORDER BY COUNT(*) DESC LIMIT 1")
read -r from_ms to_ms < <(python3 -c "
import datetime as d; z=d.timezone(d.timedelta(hours=9)); t=d.datetime.fromisoformat('$day').replace(tzinfo=z)
print(int(t.timestamp()*1000), int((t+d.timedelta(days=1)).timestamp()*1000))")
report=$(curl -fs "$url/api/v1/reports/daily?date=$day")
q() { sqlite3 "$work/db.sqlite" "$1"; }
w="project='default' AND ts_ms >= $from_ms AND ts_ms < $to_ms"
check "daily total_requests ($day, Asia/Seoul)" "$(q "SELECT COUNT(*) FROM requests WHERE $w")" "$(jq .total_requests <<<"$report")"
check "daily total_tokens" "$(q "SELECT SUM(input_tokens+output_tokens) FROM requests WHERE $w")" "$(jq .total_tokens <<<"$report")"
check "daily total_cost (nano-USD)" "$(q "SELECT SUM(cost_nanos) FROM requests WHERE $w")" "$(jq '.total_cost * 1e9 | round' <<<"$report")"
check "unpriced requests" "$(q "SELECT COUNT(*) FROM requests WHERE $w AND cost_nanos IS NULL")" "$(jq .unpriced.requests <<<"$report")"
check "unpriced models" "$(q "SELECT group_concat(model) FROM (SELECT DISTINCT model FROM requests WHERE $w AND cost_nanos IS NULL ORDER BY model)")" "$(jq -r '.unpriced.models | sort | join(",")' <<<"$report")"
for dim in model feature user_id; do
  key=${dim%_id}
  expected=$(sqlite3 -separator = "$work/db.sqlite" "SELECT COALESCE($dim,'(none)') AS k, COUNT(*) FROM requests WHERE $w GROUP BY k" | sort | tr '\n' ' ')
  actual=$(jq -r ".by_$key | to_entries[] | \"\(.key)=\(.value.requests)\"" <<<"$report" | sort | tr '\n' ' ')
  check "daily by_$key requests" "$expected" "$actual"
done
# Latency: p50/p95/p99 from merged sketches within 1% of the exact rank-based quantile that
# sqlite3 computes from the raw rows (sorted, index floor(q * (n - 1))).
lat=$(curl -fs "$url/api/v1/latency?from=$from_ms&to=$to_ms")
n=$(q "SELECT COUNT(*) FROM requests WHERE $w")
check "latency count" "$n" "$(jq .count <<<"$lat")"
check "latency max (exact)" "$(q "SELECT MAX(duration_ms) FROM requests WHERE $w")" "$(jq .max <<<"$lat")"
for p in 50 95 99; do
  exact=$(q "SELECT duration_ms FROM requests WHERE $w ORDER BY duration_ms LIMIT 1 OFFSET CAST(($n - 1) * $p / 100 AS INTEGER)")
  got=$(jq ".p$p" <<<"$lat")
  check "latency p$p within 1% of exact ($exact)" "yes" "$(python3 -c "print('yes' if abs($got - $exact) <= 0.01 * $exact + 1e-9 else 'no: $got')")"
done

# Prometheus exposition, linted by promtool (silence = pass). Counters count what this process
# ingested, so send a few new events (dated 2001, outside the day checked above) first.
head -5 "$work/events.jsonl" | jq -c '.request_id += "-after-restart" | .timestamp = 1000000000000' \
  | curl -fs -H 'content-type: application/x-ndjson' --data-binary @- "$url/api/v1/events" >/dev/null
curl -fs "$url/metrics" >"$work/metrics.txt"
check "promtool check metrics" "" "$(promtool check metrics <"$work/metrics.txt" 2>&1)"
check "exposition has the ingested requests" "yes" "$(grep -q '^llmwatch_requests_total{' "$work/metrics.txt" && echo yes || echo no)"

# The other CLI commands against the same server.
check "CLI latency (server) = API" "$(jq .count <<<"$lat")" \
  "$("$bin" latency --server "$url" --from "$from_ms" --to "$to_ms" --format json | jq .count)"
check "CLI budgets (server) = API" "$(curl -fs "$url/api/v1/budgets" | jq -c '.budgets[] | [.name, .spent_usd]')" \
  "$("$bin" budgets --server "$url" --format json | jq -c '.budgets[] | [.name, .spent_usd]')"
# gpt-4o: 1M input x $2.5 + 1M output x $10 = $12.5 (hand-computed).
check "CLI pricing cost" "openai/gpt-4o-2024-08-06 (priced as gpt-4o): \$12.500000" \
  "$("$bin" pricing cost openai/gpt-4o-2024-08-06 --input 1000000 --output 1000000)"

cli_total=$("$bin" report daily --date "$day" --server "$url" --format json | jq .total_requests)
check "CLI report (server) = API" "$(jq .total_requests <<<"$report")" "$cli_total"

# Quality: the demo's judge scores and user feedback sent through the API (with the heuristic
# scores llmwatch adds to captured answers); the rollup-based quality report and feedback summary
# vs sqlite3 over the raw score and feedback rows.
sqlite3 -json "$work/gen.db" "SELECT request_id, name, source, value FROM scores WHERE source = 'model'" \
  | jq -c '.[]' >"$work/scores.jsonl"
# Feedback at least a minute old (the summary's window ends now).
sqlite3 -json "$work/gen.db" "SELECT request_id, type, comment, correction, ts_ms AS timestamp, user_id
  FROM feedback WHERE ts_ms < CAST(strftime('%s','now') AS INTEGER) * 1000 - 60000 ORDER BY id" \
  | jq -c '.[] | with_entries(select(.value != null))' >"$work/feedback.jsonl"
check "scores accepted" "$(wc -l <"$work/scores.jsonl")" \
  "$(curl -fs -X POST --data-binary @"$work/scores.jsonl" "$url/api/v1/scores" | jq .accepted)"
check "feedback accepted" "$(wc -l <"$work/feedback.jsonl")" \
  "$(curl -fs -X POST --data-binary @"$work/feedback.jsonl" "$url/api/v1/feedback" | jq .accepted)"
quality=$(curl -fs "$url/api/v1/quality?from=$from_ms&to=$to_ms")
# A request's score per name: human first, then api, model, heuristic.
eff="WITH ranked AS (SELECT s.request_id, s.name, s.value, ROW_NUMBER() OVER (PARTITION BY s.request_id, s.name
  ORDER BY CASE s.source WHEN 'human' THEN 0 WHEN 'api' THEN 1 WHEN 'model' THEN 2 ELSE 3 END) AS rk
  FROM scores s JOIN requests r ON r.project = s.project AND r.request_id = s.request_id
  WHERE r.project = 'default' AND r.ts_ms >= $from_ms AND r.ts_ms < $to_ms), eff AS (SELECT * FROM ranked WHERE rk = 1)"
check "quality count (scored requests, $day)" "$(q "$eff SELECT COUNT(DISTINCT request_id) FROM eff")" "$(jq .count <<<"$quality")"
expected=$(q "$eff SELECT name || '=' || COUNT(*) || ':' || CAST(ROUND(AVG(value) * 1e6) AS INTEGER) FROM eff GROUP BY name ORDER BY name" | tr '\n' ' ')
actual=$(jq -r '.scores | to_entries[] | "\(.key)=\(.value.count):\(.value.mean * 1e6 | round)"' <<<"$quality" | sort | tr '\n' ' ')
check "quality per score name (count, mean)" "$expected" "$actual"
comp="$eff, c AS (SELECT request_id, AVG(value) AS v FROM eff WHERE name IN ('relevance', 'completeness', 'safety')
  GROUP BY request_id HAVING COUNT(*) = 3)"
check "quality composite count" "$(q "$comp SELECT COUNT(*) FROM c")" "$(jq .composite.count <<<"$quality")"
check "quality composite mean (1e-4)" "$(q "$comp SELECT CAST(ROUND(AVG(v) * 1e4) AS INTEGER) FROM c")" \
  "$(jq '.composite.mean * 1e4 | round' <<<"$quality")"
check "quality share below 0.7 (1e-6)" "$(q "$comp SELECT CAST(ROUND(AVG(v < 0.7 - 1e-9) * 1e6) AS INTEGER) FROM c")" \
  "$(jq '.composite.below_threshold_share * 1e6 | round' <<<"$quality")"
summary=$(curl -fs "$url/api/v1/feedback/summary?days=30")
for t in thumbs_up thumbs_down; do
  check "feedback $t" "$(q "SELECT COUNT(*) FROM feedback WHERE type = '$t'")" "$(jq .$t <<<"$summary")"
done
check "feedback reports" "$(q "SELECT COUNT(*) FROM feedback WHERE type = 'report'")" "$(jq .reports <<<"$summary")"
check "satisfaction = up / (up + down) (1e-6)" \
  "$(q "SELECT CAST(ROUND(1e6 * SUM(type = 'thumbs_up') / SUM(type IN ('thumbs_up', 'thumbs_down'))) AS INTEGER) FROM feedback")" \
  "$(jq '.satisfaction_rate * 1e6 | round' <<<"$summary")"
curl -fs "$url/api/v1/export/golden" >"$work/golden_api.jsonl"
check "golden lines = distinct corrected inputs" \
  "$(q "SELECT COUNT(DISTINCT r.input) FROM feedback f JOIN requests r ON r.project = f.project
        AND r.request_id = f.request_id WHERE f.type = 'correction' AND r.input IS NOT NULL")" \
  "$(wc -l <"$work/golden_api.jsonl")"
check "golden: the newest correction of each input" \
  "$(q "SELECT request_id || ' ' || correction FROM (SELECT f.request_id, f.correction, ROW_NUMBER() OVER
        (PARTITION BY r.input ORDER BY f.ts_ms DESC, f.id DESC) AS rk FROM feedback f JOIN requests r
        ON r.project = f.project AND r.request_id = f.request_id WHERE f.type = 'correction'
        AND r.input IS NOT NULL) WHERE rk = 1" | LC_ALL=C sort | md5sum)" \
  "$(jq -r '.request_id + " " + .expected_output' "$work/golden_api.jsonl" | LC_ALL=C sort | md5sum)"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
cli_local=$("$bin" report daily --date "$day" --db "$work/db.sqlite" --config "$work/llmwatch.toml" --format csv | awk -F, '$2=="model"{s+=$4} END{print s}')
check "CLI report (local db, csv) = API" "$(jq .total_requests <<<"$report")" "$cli_local"
"$bin" export golden --db "$work/db.sqlite" --config "$work/llmwatch.toml" >"$work/golden_cli.jsonl" 2>/dev/null
check "CLI export golden (local db) = API" "$(md5sum <"$work/golden_api.jsonl")" "$(md5sum <"$work/golden_cli.jsonl")"

# The sub-suites: each prints `NAME interop: N passed, M failed` last; their counts join ours.
sub_suite() { # name, script, args...
  local name=$1 script=$2 status counts
  shift 2
  set +e
  bash "$script" "$@" 2>&1 | tee "$work/$name.out"
  status=${PIPESTATUS[0]}
  set -e
  counts=$(sed -n "s/^$name interop: \([0-9]*\) passed, \([0-9]*\) failed\$/\1 \2/p" "$work/$name.out" | tail -1)
  if [ -n "$counts" ]; then
    pass=$((pass + ${counts% *})); fail=$((fail + ${counts#* }))
  fi
  if [ "$status" -ne 0 ] && { [ -z "$counts" ] || [ "${counts#* }" = 0 ]; }; then
    fail=$((fail + 1)); echo "FAIL $script exited $status"
  fi
}

# OTLP ingest, judged by the OpenTelemetry Python SDK and the openai instrumentation.
sub_suite otlp interop/otlp.sh
# E-mail alerts, judged by a real SMTP server (aiosmtpd: AUTH, STARTTLS, implicit TLS).
sub_suite email interop/email.sh "$bin"
# The recording proxy, judged by the official openai and anthropic SDKs against a local
# upstream stand-in speaking both wire formats.
sub_suite proxy interop/proxy.sh "$bin"
# The dashboard in Debian's chromium, headless, driven by playwright-core against demo data
# (screenshots of every page under target/screenshots/).
sub_suite dashboard interop/dashboard.sh "$bin"

echo "interop: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
