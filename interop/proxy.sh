#!/usr/bin/env bash
# The recording proxy (`[proxy]`) judged by the official `openai` and `anthropic` SDKs from PyPI
# (interop/proxy_clients.py), with interop/proxy_upstream.py as the upstream: a stand-in speaking
# OpenAI's Chat Completions (JSON and SSE, with and without stream_options.include_usage),
# Responses (JSON and typed SSE events), Embeddings, and Anthropic's Messages (JSON and SSE),
# streaming chunk by chunk with pauses, answering 429/500/529 with the providers' error bodies,
# and showing what it received (GET /_seen). Checked through llmwatch's API: each call's model,
# provider, tokens mapped per the proxy contract (cached / cache-write / reasoning), cost, status
# and error type, user/feature/release/session/attributes from the x-llmwatch-* headers, TTFT and
# duration; through the stand-in: the key forwarded, the x-llmwatch-* headers not, bodies byte for
# byte; in the SDK: streams arriving incrementally. Then: the API keys appear nowhere in the
# database files or the log (LLMWATCH_LOG=debug); budget enforcement (`enforce = true`, feature
# scope) on a second server, 429s in each provider's error shape; `add_stream_usage`, the upstream
# timeout (504) and a refused connection (502) on a third; no proxy routes without `[proxy]`.
# Usage: interop/proxy.sh [LLMWATCH_BINARY]  (default: builds target/release/llmwatch)
# Makes its own virtualenv (cached under target/, keyed by requirements-proxy.txt; PROXY_VENV=DIR
# overrides). Needs python3 (with venv), curl.
set -euo pipefail
bin_arg=${1:+$(realpath "$1")}
cd "$(dirname "$0")/.."

source interop/lib.sh
command -v curl >/dev/null || apt_install curl

llmwatch_bin "$bin_arg"

python_venv interop/requirements-proxy.txt proxy "${PROXY_VENV:-}"
# Nothing from the environment may steer the SDKs elsewhere (keys, base URLs, profiles).
unset OPENAI_API_KEY OPENAI_BASE_URL OPENAI_ORG_ID OPENAI_PROJECT_ID ANTHROPIC_API_KEY \
  ANTHROPIC_AUTH_TOKEN ANTHROPIC_BASE_URL ANTHROPIC_PROFILE ANTHROPIC_CUSTOM_HEADERS \
  HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

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
  timeout 120 "$@" >"$work/judge.out" 2>"$work/judge.err" || rc=$?
  while IFS=$'\t' read -r tag name exp act; do
    if [ "$tag" = CHECK ]; then check "$name" "$exp" "$act"; else echo "$tag${name:+ $name}"; fi
  done <"$work/judge.out"
  check "$label exited 0" 0 "$rc"
  if [ "$rc" != 0 ] || grep -q 'Traceback' "$work/judge.err"; then
    sed 's/^/     | /' "$work/judge.err" | tail -40
  fi
}
finish() {
  echo "proxy interop: $pass passed, $fail failed"
  [ "$fail" -eq 0 ] && exit 0
  exit 1
}

if ! "$bin" serve --help 2>/dev/null | grep -q -- '--proxy'; then
  check "llmwatch serve has --proxy (the proxy is built in)" yes no
  finish
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The upstream stand-in.
"$py" interop/proxy_upstream.py "$work/upstream.port" 2>"$work/upstream.err" & pids+=($!)
for _ in $(seq 100); do [ -s "$work/upstream.port" ] && break; sleep 0.1; done
if [ ! -s "$work/upstream.port" ]; then
  check "proxy_upstream.py started" yes no; sed 's/^/     | /' "$work/upstream.err" | tail -20
  finish
fi
upstream="http://127.0.0.1:$(cat "$work/upstream.port")"

# llmwatch servers: NAME -> $work/NAME.db, $work/NAME.log (stdout and stderr), url_NAME, pid_NAME.
start() { # name, config
  local port; port=$(free_port)
  LLMWATCH_LOG=debug "$bin" serve --listen "127.0.0.1:$port" --db "$work/$1.db" --config "$2" \
    >"$work/$1.log" 2>&1 & pids+=($!)
  printf -v "pid_$1" %s "$!"
  printf -v "url_$1" %s "http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && return 0; sleep 0.1; done
  check "llmwatch ($1) started" yes no; sed 's/^/     | /' "$work/$1.log" | tail -20
  finish
}
stop() { # name: SIGTERM, then wait (bounded) for it to exit
  local pid_var="pid_$1" _
  kill "${!pid_var}" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "${!pid_var}" 2>/dev/null || return 0; sleep 0.1; done
  echo "note llmwatch ($1) did not exit within 10 s of SIGTERM"
}
# The API keys the clients send must appear in no database file and no log line.
no_keys() { # name
  local f hits=""
  for f in "$work/$1.db"* "$work/$1.log"; do
    [ -f "$f" ] || continue
    if grep -a -q -e SECRET123 -e SECRET456 "$f"; then hits="$hits ${f##*/}"; fi
  done
  check "$1: the API keys appear in no database file and not in the log" "" "${hits# }"
  [ -z "$hits" ] || grep -a -h -o -e '.\{0,80\}SECRET[0-9]*.\{0,40\}' "$work/$1.log" 2>/dev/null | head -3 | sed 's/^/     | /'
}

# 1. Every API, streaming and not, through both SDKs.
cat >"$work/main.toml" <<TOML
capture_content = true
[proxy]
openai_base_url = "$upstream/v1"
anthropic_base_url = "$upstream"
TOML
start main "$work/main.toml"
judge "proxy_clients.py (main)" "$py" interop/proxy_clients.py --mode main --url "$url_main" --upstream "$upstream"
log_lines=$(wc -l <"$work/main.log")
stop main
no_keys main
echo "note main: $log_lines log lines at LLMWATCH_LOG=debug"

# 2. Budget enforcement: a tiny daily budget for feature "capped" with enforce = true, and an
#    unscoped one without enforce that every call exceeds.
limit=0.0005
cat >"$work/budget.toml" <<TOML
[proxy]
openai_base_url = "$upstream/v1"
anthropic_base_url = "$upstream"
[[budgets]]
name = "capped-daily"
period = "day"
limit_usd = $limit
feature = "capped"
enforce = true
[[budgets]]
name = "watch-only"
period = "day"
limit_usd = 0.000001
TOML
start budget "$work/budget.toml"
judge "proxy_clients.py (budget)" "$py" interop/proxy_clients.py --mode budget --limit-usd "$limit" --url "$url_budget" --upstream "$upstream"
stop budget
no_keys budget

# 3. add_stream_usage, a 2 s upstream timeout, and an Anthropic upstream that refuses connections.
closed=$(free_port)
cat >"$work/aux.toml" <<TOML
[proxy]
openai_base_url = "$upstream/v1"
anthropic_base_url = "http://127.0.0.1:$closed"
timeout = "2s"
connect_timeout = "1s"
add_stream_usage = true
TOML
start aux "$work/aux.toml"
judge "proxy_clients.py (aux)" "$py" interop/proxy_clients.py --mode aux --url "$url_aux" --upstream "$upstream"
stop aux
no_keys aux

# 4. Without [proxy] (and without --proxy) there are no proxy routes.
printf 'capture_content = false\n' >"$work/off.toml"
start off "$work/off.toml"
before=$(curl -s "$upstream/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' "$url_off/proxy/openai/v1/chat/completions")
after=$(curl -s "$upstream/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
check "no [proxy]: POST /proxy/openai/v1/chat/completions is 404, nothing sent upstream" "404 0" "$code $((after - before))"
stop off

if grep -q Traceback "$work/upstream.err"; then
  echo "note proxy_upstream.py errors:"; sed 's/^/     | /' "$work/upstream.err" | tail -20
fi
finish
