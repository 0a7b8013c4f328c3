#!/usr/bin/env bash
# The dashboard in a real browser: Debian's chromium, headless, driven by playwright-core (npm,
# pinned in interop/dashboard/package-lock.json; it never downloads a browser) against
# `llmwatch demo` data. interop/dashboard/check.mjs checks that each page loads with no console
# error and no failed request, that its charts render non-empty, that a filter change updates the
# URL and the data, that a request's detail opens from the Requests page, that a silence can be
# created and removed on the Alerts page, and that auto-refresh fetches again. Screenshots of
# every page (and two in the dark theme) go to target/screenshots/ (a CI artefact).
# Usage: interop/dashboard.sh [LLMWATCH_BINARY]  (default: builds target/release/llmwatch)
# Installs chromium and node/npm with apt-get when missing; playwright-core is installed with
# `npm ci` into a directory under target/ (keyed by the lock file and node's version;
# DASHBOARD_NODE_DIR=DIR overrides), so the work tree stays clean.
set -euo pipefail
bin_arg=${1:+$(realpath "$1")}
cd "$(dirname "$0")/.."
started=$(date +%s)

source interop/lib.sh
chromium=${CHROMIUM:-/usr/bin/chromium}
need_apt=()
[ -x "$chromium" ] || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v curl >/dev/null || need_apt+=(curl)
# A small CJK font: the demo's feedback comments are Korean and Japanese (screenshots legible).
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || need_apt+=(fonts-wqy-microhei)
[ ${#need_apt[@]} -eq 0 ] || apt_install "${need_apt[@]}"

pass=0; fail=0
finish() {
  echo "took $(( $(date +%s) - started )) s"
  echo "dashboard interop: $pass passed, $fail failed"
  if [ "$fail" -eq 0 ]; then exit 0; else exit 1; fi
}
die() { fail=$((fail + 1)); echo "FAIL $1"; [ -z "${2:-}" ] || sed 's/^/     | /' "$2" | tail -20; finish; }

node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node $(node -v) is too old: playwright-core needs node >= 20"

llmwatch_bin "$bin_arg"

# playwright-core from the lock file, reused while the lock file and node's version stay the same.
src=interop/dashboard
key=$( (node -v; cat "$src/package-lock.json") | sha256sum | cut -c1-16)
nodedir="${DASHBOARD_NODE_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/interop-node-dashboard-$key}"
if [ ! -f "$nodedir/.installed" ]; then
  rm -rf "$nodedir"; mkdir -p "$nodedir"
  cp "$src/package.json" "$src/package-lock.json" "$nodedir/"
  if ! (cd "$nodedir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefer-offline --no-audit --no-fund --ignore-scripts --loglevel=error) \
      >"$nodedir/npm.log" 2>&1; then
    die "npm ci playwright-core" "$nodedir/npm.log"
  fi
  touch "$nodedir/.installed"
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
port=$(free_port)
url="http://127.0.0.1:$port"
# The demo seeds 14 days (~20 s on 2 cores) and then serves, with a trickle of live traffic.
LLMWATCH_LOG=warn "$bin" demo --listen "127.0.0.1:$port" --db "$work/demo.db" >"$work/demo.log" 2>&1 & pids+=($!)
up=
for _ in $(seq 1200); do # 120 s
  kill -0 "${pids[-1]}" 2>/dev/null || die "llmwatch demo exited" "$work/demo.log"
  if curl -fs "$url/healthz" >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
[ -n "$up" ] || die "llmwatch demo did not answer /healthz within 120 s" "$work/demo.log"
up=
for _ in $(seq 600); do # 60 s
  if curl -fs "$url/api/v1/budgets" >/dev/null 2>&1; then up=1; break; fi
  sleep 0.1
done
[ -n "$up" ] || die "llmwatch demo did not answer /api/v1/budgets within 60 s" "$work/demo.log"
echo "llmwatch demo ready on $url after $(( $(date +%s) - started )) s"

shots="${SCREENSHOT_DIR:-$PWD/target/screenshots}"
mkdir -p "$shots"
rm -f "$shots"/*.png
set +e
LLMWATCH_URL="$url" DASHBOARD_NODE_DIR="$nodedir" SCREENSHOT_DIR="$shots" CHROMIUM="$chromium" \
  timeout -k 5 240 node "$src/check.mjs" 2>"$work/check.err" | tee "$work/check.out"
status=${PIPESTATUS[0]}
set -e
pass=$(grep -c '^ok ' "$work/check.out" || true)
fail=$(grep -c '^FAIL ' "$work/check.out" || true)
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then
  fail=1; echo "FAIL interop/dashboard/check.mjs exited $status$([ "$status" = 124 ] && echo ' (timed out after 240 s)')"
  sed 's/^/     | /' "$work/check.err" | tail -20
elif [ -s "$work/check.err" ]; then
  sed 's/^/     | stderr: /' "$work/check.err" | tail -10
fi
echo "screenshots: $(find "$shots" -name '*.png' | wc -l) in $shots"
finish
