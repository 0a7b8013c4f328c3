#!/usr/bin/env bash
# OTLP/HTTP trace ingest (POST /v1/traces) judged by the official OpenTelemetry Python packages:
#  - otlp_sdk.py: opentelemetry-sdk + the OTLP/HTTP exporter (protobuf, then gzip) sending traces
#    with exact span times: stages, durations, tokens, cost, errors, split exports, retries, a
#    trace whose root never arrives.
#  - otlp_openai.py: the `openai` client instrumented by opentelemetry-instrumentation-openai-v2,
#    against a local OpenAI stand-in (openai_standin.py).
#    Plus back-pressure: 24 concurrent exporters against a server with writer_queue = 1 (503s
#    with Retry-After, retried by the exporter; every trace recorded once).
#  - curl: hand-written OTLP/JSON (plain and gzip) and malformed bodies.
#  - otlp_metrics.py: the SDK's metric exporter sending gen_ai.client.* histograms (POST
#    /v1/metrics) for an app without traces: requests, tokens, cost, errors; re-exports of the
#    same cumulative state counted once.
# Expected values are computed from what was sent and a hand-written copy of data/prices.toml.
# Makes its own virtualenv (cached under target/, keyed by requirements-otlp.txt; OTLP_VENV=DIR
# overrides). Needs python3 (with venv), curl, jq, gzip.
set -euo pipefail
cd "$(dirname "$0")/.."

source interop/lib.sh
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v jq >/dev/null || need_apt+=(jq)
[ ${#need_apt[@]} -eq 0 ] || apt_install "${need_apt[@]}"

llmwatch_bin

python_venv interop/requirements-otlp.txt otlp "${OTLP_VENV:-}"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

pass=0; fail=0
check() { # name, expected, actual
  if [ "$2" = "$3" ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1: expected $2, got $3"; fi
}
# Runs a Python judge; its "CHECK<TAB>name<TAB>expected<TAB>actual" lines become checks.
judge() { # label, command...
  local label=$1 rc=0 tag name exp act; shift
  "$@" >"$work/judge.out" 2>"$work/judge.err" || rc=$?
  while IFS=$'\t' read -r tag name exp act; do
    if [ "$tag" = CHECK ]; then check "$name" "$exp" "$act"; else echo "$tag${name:+ $name}"; fi
  done <"$work/judge.out"
  check "$label exited 0" 0 "$rc"
  if [ "$rc" != 0 ] || grep -q 'Traceback\|Failed to export' "$work/judge.err"; then
    sed 's/^/     | /' "$work/judge.err" | tail -30
  fi
}

grace=2
cat >"$work/llmwatch.toml" <<TOML
[otlp]
grace_period_s = $grace
TOML

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
LLMWATCH_LOG=warn "$bin" serve --db "$work/db.sqlite" --listen "127.0.0.1:$port" --config "$work/llmwatch.toml" & pids+=($!)
url="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.1; done
curl -fs "$url/healthz" >/dev/null || { echo "server did not start"; exit 1; }

# 1. Hand-written OTLP/JSON: hex ids, 64-bit integers as strings (and one as a JSON number, which
#    the protobuf JSON mapping also accepts), enums as integers.
hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
now_ms=$(( $(date +%s) * 1000 - 400000 ))
json_trace() { # trace_id, service name -> body. Root 0..200.5 ms, chat gpt-4o-mini 25..175.25 ms.
  local t0=$((now_ms * 1000000)) root; root=$(hex 8)
  cat <<JSON
{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"$2"}}]},
 "scopeSpans":[{"scope":{"name":"hand-written"},"spans":[
  {"traceId":"$1","spanId":"$root","name":"handle_request","kind":2,
   "startTimeUnixNano":"$t0","endTimeUnixNano":"$((t0 + 200500000))",
   "attributes":[{"key":"user.id","value":{"stringValue":"json-user"}},
                 {"key":"llmwatch.attr.tier","value":{"stringValue":"gold"}}],
   "status":{}},
  {"traceId":"$1","spanId":"$(hex 8)","parentSpanId":"$root","name":"chat gpt-4o-mini","kind":3,
   "startTimeUnixNano":"$((t0 + 25000000))","endTimeUnixNano":"$((t0 + 175250000))",
   "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
                 {"key":"gen_ai.provider.name","value":{"stringValue":"openai"}},
                 {"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o-mini"}},
                 {"key":"gen_ai.usage.input_tokens","value":{"intValue":"4000"}},
                 {"key":"gen_ai.usage.cache_read.input_tokens","value":{"intValue":"1000"}},
                 {"key":"gen_ai.usage.output_tokens","value":{"intValue":500}}],
   "status":{"code":1}}]}]}]}
JSON
}
post() { # content-type, body file, extra curl args... -> "status content-type"
  local ct=$1 f=$2; shift 2
  curl -s -o "$work/resp" -w '%{http_code} %{content_type}\n' -H "content-type: $ct" "$@" --data-binary @"$f" "$url/v1/traces"
}
record() { # request id -> record JSON (polls up to 5 s)
  for _ in $(seq 50); do curl -fs "$url/api/v1/requests/$1" && return 0; sleep 0.1; done
  echo '{}'
}

tid=$(hex 16)
json_trace "$tid" otlp-json >"$work/t.json"
read -r code ctype < <(post application/json "$work/t.json")
check "JSON POST: 200" 200 "$code"
check "JSON POST: response is application/json" application/json "${ctype%%;*}"
check "JSON POST: body is a JSON object (ExportTraceServiceResponse)" object "$(jq -r type "$work/resp" 2>/dev/null || echo "not JSON: $(head -c 80 "$work/resp")")"
rec=$(record "$tid")
# Hand-computed: gpt-4o-mini $0.15 in / $0.075 cached / $0.60 out per 1M:
# (4000-1000) x 0.15 + 1000 x 0.075 + 500 x 0.60 = 450 + 75 + 300 = 825 micro-USD.
check "JSON record: model, provider, feature, user, attributes.tier" \
  '["gpt-4o-mini","openai","otlp-json","json-user","gold"]' \
  "$(jq -c '[.model, .provider, .feature, .user_id, .attributes.tier]' <<<"$rec")"
check "JSON record: tokens (input, cached, output)" '[4000,1000,500]' \
  "$(jq -c '[.input_tokens, .cached_input_tokens, .output_tokens]' <<<"$rec")"
check "JSON record: cost (nano-USD)" 825000 "$(jq 'if .cost == null then null else .cost * 1e9 | round end' <<<"$rec")"
check "JSON record: duration_ms, stages, timestamp_ms" "[200.5,{\"model_inference\":150.25},$now_ms]" \
  "$(jq -c '[.duration_ms, .stages, .timestamp_ms]' <<<"$rec")"
check "JSON record: status ok" ok "$(jq -r .status <<<"$rec")"

tid=$(hex 16)
json_trace "$tid" otlp-json-gzip | gzip -c >"$work/t.json.gz"
read -r code _ < <(post application/json "$work/t.json.gz" -H 'content-encoding: gzip')
check "gzip JSON POST: 200" 200 "$code"
check "gzip JSON record: feature, tokens, cost (nano-USD)" '["otlp-json-gzip",4000,500,825000]' \
  "$(jq -c '[.feature, .input_tokens, .output_tokens, (if .cost == null then null else .cost * 1e9 | round end)]' <<<"$(record "$tid")")"

printf '\x0a\xff\xff\xff\xff\x0f\x12' >"$work/bad.pb"
read -r code _ < <(post application/x-protobuf "$work/bad.pb")
check "malformed protobuf: 400" 400 "$code"
printf '{"resourceSpans":[{"scopeSpans":[' >"$work/bad.json"
read -r code ctype < <(post application/json "$work/bad.json")
check "malformed JSON: 400 with a JSON google.rpc.Status body" "400 application/json object" \
  "$code ${ctype%%;*} $(jq -r type "$work/resp" 2>/dev/null || echo "not-JSON")"
read -r code _ < <(post application/json "$work/t.json" -H 'content-encoding: gzip')
check "content-encoding gzip on a body that is not gzip: 400" 400 "$code"

# 2. The OpenTelemetry SDK and OTLP/HTTP exporter: protobuf (batch), then gzip (one export/span).
judge "otlp_sdk.py (protobuf)" "$py" interop/otlp_sdk.py --url "$url" --mode protobuf --grace "$grace"
judge "otlp_sdk.py (gzip)" "$py" interop/otlp_sdk.py --url "$url" --mode gzip --grace "$grace"

# Back-pressure: a second server with a one-batch writer queue, hit by 24 concurrent exporters.
printf 'writer_queue = 1\n' >"$work/burst.toml"
bport=$(free_port)
LLMWATCH_LOG=warn "$bin" serve --db "$work/burst.sqlite" --listen "127.0.0.1:$bport" --config "$work/burst.toml" 2>"$work/burst.log" & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$bport/healthz" >/dev/null && break; sleep 0.1; done
judge "otlp_sdk.py (burst)" "$py" interop/otlp_sdk.py --url "http://127.0.0.1:$bport" --mode burst

# 3. The instrumented openai client against the local stand-in.
"$py" interop/openai_standin.py "$work/standin.port" & pids+=($!)
for _ in $(seq 50); do [ -s "$work/standin.port" ] && break; sleep 0.1; done
judge "otlp_openai.py" "$py" interop/otlp_openai.py --url "$url" \
  --standin "http://127.0.0.1:$(cat "$work/standin.port")/v1"

# 4. Metrics only: the SDK's MeterProvider + OTLP/HTTP metric exporter (cumulative), a fresh
#    service name so its points are not ignored as those of a service that sends traces.
judge "otlp_metrics.py" "$py" interop/otlp_metrics.py --url "$url"

echo "otlp interop: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
