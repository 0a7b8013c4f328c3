#!/usr/bin/env bash
# OTLP/HTTP trace ingest, end to end until stored and queryable (issue 4), with baselines
# measured in the same run:
#   * the load client's own ceiling: the same payloads POSTed to the null /v1/traces sink of
#     shared/bench/mock_openai.py (answers 200 without parsing);
#   * storage: the same spans inserted as raw rows into plain SQLite with llmwatch's pragmas, one
#     commit per export request (see plain_sqlite below);
#   * the peer: Arize Phoenix's OTLP receiver (embedded SQLite) via shared/bench/peer_phoenix.sh.
#
# One payload set (shared/bench/otlp_payloads.py: TRACES traces x 5 spans, 100 traces per
# ExportTraceServiceRequest, GenAI attributes, fixed seed) is POSTed by shared/bench/otlp_load.py
# over CONC keep-alive connections. For llmwatch every run starts `llmwatch serve` on a fresh
# database, and timing runs from the first POST until a count query on the database reports every
# span stored (COUNT=requests [default]: count(*) x 5 from `requests`, every workload trace has
# 5 spans; COUNT=otlp: the same, counting only records that keep their trace's spans).
# After each run the stored rows are checked against the payload manifest (requests, errors,
# tokens, features); a mismatch is printed as MISMATCH and the script exits 1 at the end.
# Peak RSS = VmHWM of the llmwatch process, read just before it is stopped (by its PID).
# Order: null sink, plain SQLite, llmwatch (full set), llmwatch (Phoenix-sized prefix, for a
# like-for-like ratio), repeated RUNS times, then Phoenix.
#
# Usage (from the project root):
#   bash benches/otlp_ingest.sh
# Env knobs [defaults]:
#   TRACES [20000]  RUNS [3]  CONC [4]  GZIP [0]  COUNT [requests]  PORT [14318]  NULL_PORT [18099]
#   DURABILITY [full]: llmwatch's `durability` (normal = no fsync per commit; via a temp config)
#   PHOENIX_TRACES [2000]  PHOENIX_RUNS [1]  SKIP_PHOENIX [0]  PHOENIX_PORT [16006]
#   VENV [/tmp/benchvenv] (python with aiohttp + opentelemetry-proto, + arize-phoenix for the peer)
#   SHARED [../shared relative to the project root]  OUT [/tmp/otlp_ingest_results]
#   LLMWATCH_BIN [target/release/llmwatch, built with `cargo build --release --locked`]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TRACES=${TRACES:-20000}
PER_REQUEST=100
RUNS=${RUNS:-3}
CONC=${CONC:-4}
GZIP=${GZIP:-0}
COUNT=${COUNT:-auto}
PORT=${PORT:-14318}
NULL_PORT=${NULL_PORT:-18099}
PHOENIX_TRACES=${PHOENIX_TRACES:-2000}
PHOENIX_RUNS=${PHOENIX_RUNS:-1}
PHOENIX_PORT=${PHOENIX_PORT:-16006}
SKIP_PHOENIX=${SKIP_PHOENIX:-0}
VENV=${VENV:-/tmp/benchvenv}
SHARED=${SHARED:-$(cd "$ROOT/../shared" 2>/dev/null && pwd || echo /work/shared)}
OUT=${OUT:-/tmp/otlp_ingest_results}
DURABILITY=${DURABILITY:-full}
PY="$VENV/bin/python"
LOAD_MAX_S=300      # cap on each sending phase
POLL_TIMEOUT=300    # cap on waiting for "all stored"

for f in "$SHARED/bench/otlp_payloads.py" "$SHARED/bench/otlp_load.py" "$SHARED/bench/mock_openai.py"; do
  [ -f "$f" ] || { echo "missing $f (set SHARED)"; exit 2; }
done
[ -x "$PY" ] || { echo "no python at $PY (set VENV; see $SHARED/bench/README.md)"; exit 2; }
command -v sqlite3 >/dev/null || { echo "sqlite3 CLI required"; exit 2; }
if [ $((TRACES % PER_REQUEST)) -ne 0 ] || [ $((PHOENIX_TRACES % PER_REQUEST)) -ne 0 ]; then
  echo "TRACES and PHOENIX_TRACES must be multiples of $PER_REQUEST"; exit 2
fi
[ "$PHOENIX_TRACES" -le "$TRACES" ] || { echo "PHOENIX_TRACES must be <= TRACES"; exit 2; }

mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/otlp_ingest.XXXXXX)
# on exit, stop whatever this shell started and is still running (its own background jobs only)
cleanup() {
  for p in $(jobs -pr); do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# Stops one process we started: TERM, wait up to 15 s, then KILL.
stop_pid() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# 1. build
if [ -z "${LLMWATCH_BIN:-}" ]; then
  echo "== cargo build --release --locked"
  timeout 3600 cargo build --release --locked 2>&1 | tail -2
  LLMWATCH_BIN="$ROOT/target/release/llmwatch"
fi
[ -x "$LLMWATCH_BIN" ] || { echo "no binary at $LLMWATCH_BIN"; exit 2; }
# 2. payloads (one set for every llmwatch and null-sink run)
PAYLOAD="$TMP/payload"
(cd "$SHARED" && timeout 600 "$PY" bench/otlp_payloads.py --traces "$TRACES" \
   --per-request "$PER_REQUEST" --out "$PAYLOAD" >/dev/null)
SPANS=$((TRACES * 5))
PHX_FILES=$((PHOENIX_TRACES / PER_REQUEST))
GZ_FLAG=(); [ "$GZIP" = 1 ] && GZ_FLAG=(--gzip)
echo "payload: $TRACES traces x 5 spans = $SPANS spans in $((TRACES / PER_REQUEST)) requests of $PER_REQUEST traces" \
     "($(du -sb "$PAYLOAD" | cut -f1) bytes), concurrency $CONC, gzip=$GZIP, durability=$DURABILITY"
git -C "$ROOT" rev-parse --short HEAD 2>/dev/null | sed 's/^/llmwatch commit (plus working tree): /' || true

RES_NULL="$OUT/null.jsonl"; RES_LW="$OUT/llmwatch.jsonl"; RES_LW_SMALL="$OUT/llmwatch_small.jsonl"
RES_SQL="$OUT/plain_sqlite.jsonl"
rm -f "$RES_NULL" "$RES_LW" "$RES_LW_SMALL" "$RES_SQL"

# Storage baseline (same run, same disk): the same spans, pre-serialized before timing (one row
# per span: trace id, span id, the span's protobuf bytes), inserted into a fresh SQLite file with
# llmwatch's pragmas (WAL, synchronous=FULL, wal_autocheckpoint=16384), one executemany + COMMIT
# per request file (500 spans), one connection. Only the transactions are timed: the cost of
# durably storing the raw spans with one commit per export request, which moves with the
# machine's disk noise as llmwatch does.
plain_sqlite() {
  local label=$1
  timeout 600 "$PY" - "$PAYLOAD" "$TMP/plain.sqlite" "$label" "$RES_SQL" <<'EOF'
import json, os, sqlite3, sys, time
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
payload, db, label, out = sys.argv[1:]
man = json.load(open(os.path.join(payload, "manifest.json")))
batches = []
for fn in man["files"]:
    req = ExportTraceServiceRequest.FromString(open(os.path.join(payload, fn), "rb").read())
    batches.append([(sp.trace_id, sp.span_id, sp.SerializeToString())
                    for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans])
for f in (db, db + "-wal", db + "-shm"):
    if os.path.exists(f):
        os.remove(f)
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=FULL")
c.execute("PRAGMA wal_autocheckpoint=16384")
c.execute("CREATE TABLE spans (trace_id BLOB NOT NULL, span_id BLOB NOT NULL, span BLOB NOT NULL,"
          " PRIMARY KEY (trace_id, span_id)) WITHOUT ROWID")
n = 0
t0 = time.perf_counter()
for rows in batches:
    c.execute("BEGIN")
    c.executemany("INSERT INTO spans VALUES (?,?,?)", rows)
    c.execute("COMMIT")
    n += len(rows)
wall = time.perf_counter() - t0
assert c.execute("select count(*) from spans").fetchone()[0] == n
c.close()
for f in (db, db + "-wal", db + "-shm"):
    if os.path.exists(f):
        os.remove(f)
r = {"label": label, "spans": n, "commits": len(batches), "wall_s": wall, "spans_per_s": n / wall}
open(out, "a").write(json.dumps(r) + "\n")
print(f"  {label}: {n:,} spans in {len(batches)} commits, {wall:.2f}s, {n / wall:,.0f} spans/s")
EOF
}

# load URL LIMIT_FILES LABEL JSON [COUNT_CMD]: one load run, result appended to JSON.
load() {
  local url=$1 limit=$2 label=$3 json=$4 count=${5:-}
  local args=(--url "$url" --dir "$PAYLOAD" --concurrency "$CONC" --limit "$limit" --label "$label"
              --json "$json" --max-seconds "$LOAD_MAX_S" --poll-timeout "$POLL_TIMEOUT"
              --poll-interval 0.05 "${GZ_FLAG[@]}")
  [ -n "$count" ] && args+=(--count-cmd "$count")
  (cd "$SHARED" && timeout $((LOAD_MAX_S + POLL_TIMEOUT + 60)) "$PY" bench/otlp_load.py "${args[@]}" >/dev/null)
}

# 7. the null sink (client ceiling): one process for the whole script
(cd "$SHARED" && exec "$PY" bench/mock_openai.py --port "$NULL_PORT" --max-seconds 3600) >"$TMP/null.log" 2>&1 &
NULL_PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$NULL_PORT/health" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$NULL_PORT/health" || { echo "null sink did not start"; cat "$TMP/null.log"; exit 1; }

# run_llmwatch LIMIT_FILES LABEL JSON: fresh db, serve, load, check, peak RSS, stop.
FAILED=0
run_llmwatch() {
  local limit=$1 label=$2 json=$3
  local dir="$TMP/$label"; mkdir -p "$dir"
  local db="$dir/db.sqlite"
  local cfg=()
  if [ "$DURABILITY" != full ]; then
    printf 'durability = "%s"\n' "$DURABILITY" >"$dir/llmwatch.toml"
    cfg=(--config "$dir/llmwatch.toml")
  fi
  env -u LLMWATCH_CONFIG "$LLMWATCH_BIN" serve --db "$db" --listen "127.0.0.1:$PORT" "${cfg[@]}" \
    >"$dir/server.log" 2>&1 &
  local pid=$!
  local ok=0
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz"; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ $ok = 0 ]; then echo "llmwatch did not become healthy"; tail -20 "$dir/server.log"; stop_pid "$pid"; exit 1; fi
  local mode=$COUNT count
  [ "$mode" = auto ] && mode=requests
  if [ "$mode" = otlp ]; then # traces still waiting for their root count as not stored
    count="sqlite3 -cmd '.timeout 5000' $db 'select count(*)*5 from requests where spans is not null'"
  else
    count="sqlite3 -cmd '.timeout 5000' $db 'select count(*)*5 from requests'"
  fi
  load "http://127.0.0.1:$PORT" "$limit" "$label" "$json.tmp" "$count"
  local hwm cpu
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  # server CPU time (user + system, seconds) over its whole life (startup is negligible)
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$pid/stat" 2>/dev/null || echo 0)
  # stored rows vs the manifest of the files sent
  local check
  check=$("$PY" - "$db" "$PAYLOAD" "$limit" <<'EOF'
import json, os, sqlite3, sys
from collections import Counter
db, payload, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
man = json.load(open(os.path.join(payload, "manifest.json")))
# expected totals of the first `limit` files: recount from the protobufs (the manifest covers all)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
exp = Counter()
feat = Counter()
for fn in man["files"][:limit]:
    req = ExportTraceServiceRequest.FromString(open(os.path.join(payload, fn), "rb").read())
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                exp["spans"] += 1
                a = {kv.key: kv.value for kv in sp.attributes}
                if "llmwatch.feature" in a:
                    exp["traces"] += 1
                    feat[a["llmwatch.feature"].string_value] += 1
                if "gen_ai.usage.input_tokens" in a:
                    exp["input_tokens"] += a["gen_ai.usage.input_tokens"].int_value
                    exp["output_tokens"] += a["gen_ai.usage.output_tokens"].int_value
                if sp.status.code == 2 and "gen_ai.request.model" in a:
                    exp["error_generations"] += 1
c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
got = {}
got["traces"], got["input_tokens"], got["output_tokens"], got["error_generations"] = c.execute(
    "select count(*), coalesce(sum(input_tokens),0), coalesce(sum(output_tokens),0), "
    "coalesce(sum(status='error'),0) from requests").fetchone()
gfeat = Counter(dict(c.execute("select coalesce(feature,''), count(*) from requests group by 1")))
# Every trace of the workload has its root: none may be left pending, each record keeps its spans.
got["pending_traces"] = c.execute(
    "select count(*) from otlp_traces where pending_since_ms is not null").fetchone()[0]
exp["pending_traces"] = 0
got["spans"] = 5 * c.execute("select count(*) from requests where spans is not null").fetchone()[0]
bad = [f"{k}: stored {got[k]} != sent {exp[k]}" for k in ("traces", "spans", "input_tokens",
       "output_tokens", "error_generations", "pending_traces") if got[k] != exp[k]]
if gfeat != feat:
    bad.append(f"features: stored {dict(gfeat)} != sent {dict(feat)}")
print(json.dumps({"expected": dict(exp), "stored": got, "mismatches": bad}))
EOF
) || check='{"mismatches": ["the stored-rows check itself failed"]}'
  stop_pid "$pid"
  local dbbytes
  dbbytes=$(cat "$db" "$db-wal" 2>/dev/null | wc -c)
  "$PY" - "$json.tmp" "$json" "$hwm" "$mode" "$check" "$cpu" "$dbbytes" <<'EOF'
import json, sys
tmp, out, hwm, mode, check, cpu, dbbytes = sys.argv[1:]
r = json.loads(open(tmp).read().splitlines()[-1])
r.update({"peak_rss_mb": int(hwm) / 1024, "count_mode": mode, "check": json.loads(check),
          "server_cpu_s": float(cpu), "db_bytes_after_stop": int(dbbytes)})
open(out, "a").write(json.dumps(r) + "\n")
bad = r["check"]["mismatches"]
print(f"  {r['label']}: e2e {r.get('e2e_s', 0):.2f}s  {r.get('e2e_spans_per_s') or 0:,.0f} spans/s stored  "
      f"send {r['send_spans_per_s'] or 0:,.0f} spans/s  statuses {r['statuses']} retries {r['retries']}  "
      f"all_stored {r.get('all_stored')}  p50/p99 {r['latency_ms_incl_retries']['p50']:.1f}/"
      f"{r['latency_ms_incl_retries']['p99']:.1f} ms  peak RSS {int(hwm)/1024:.0f} MiB  "
      f"server CPU {float(cpu):.2f}s ({100 * float(cpu) / r.get('e2e_s', 1):.0f}% of a core)  "
      f"db {int(dbbytes) / 2**20:.0f} MiB  count={mode}  "
      + ("check OK" if not bad else "MISMATCH: " + "; ".join(bad)))
sys.exit(1 if bad or not r.get("all_stored") else 0)
EOF
  local rc=$?
  rm -f "$json.tmp"
  rm -rf "$dir"
  return $rc
}

ALL_FILES=$((TRACES / PER_REQUEST))
for run in $(seq 1 "$RUNS"); do
  echo "== run $run/$RUNS"
  load "http://127.0.0.1:$NULL_PORT" "$ALL_FILES" "null-run$run" "$RES_NULL"
  "$PY" - "$RES_NULL" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f"  {r['label']}: send {r['send_wall_s']:.2f}s  {r['send_spans_per_s']:,.0f} spans/s offered  "
      f"p50/p99 {r['latency_ms_incl_retries']['p50']:.1f}/{r['latency_ms_incl_retries']['p99']:.1f} ms  "
      f"statuses {r['statuses']}")
EOF
  plain_sqlite "plain-sqlite-run$run"
  run_llmwatch "$ALL_FILES" "llmwatch-run$run" "$RES_LW" || FAILED=1
  if [ "$PHX_FILES" -lt "$ALL_FILES" ]; then
    run_llmwatch "$PHX_FILES" "llmwatch-${PHOENIX_TRACES}traces-run$run" "$RES_LW_SMALL" || FAILED=1
  fi
done
stop_pid "$NULL_PID"

# 6. the peer
PHX_JSONL=""
if [ "$SKIP_PHOENIX" != 1 ]; then
  echo "== Arize Phoenix: $PHOENIX_TRACES traces, $PHOENIX_RUNS run(s) (~100 spans/s: expect ~$((PHOENIX_TRACES * 5 / 100 * PHOENIX_RUNS)) s)"
  (cd "$SHARED" && VENV="$VENV" TRACES="$PHOENIX_TRACES" RUNS="$PHOENIX_RUNS" CONC="$CONC" PORT="$PHOENIX_PORT" \
     OUT="$OUT/phoenix" timeout 3600 bash bench/peer_phoenix.sh) | sed 's/^/  /' || echo "  phoenix run failed"
  PHX_JSONL="$OUT/phoenix/w1_phoenix_${PHOENIX_TRACES}.jsonl"
fi

# summary
"$PY" - "$RES_LW" "$RES_LW_SMALL" "$RES_NULL" "$PHX_JSONL" "$TRACES" "$PHOENIX_TRACES" "$OUT/summary.json" "$RES_SQL" <<'EOF'
import json, os, statistics, sys
lw_f, lws_f, null_f, phx_f, traces, ptraces, out, sql_f = sys.argv[1:]
def rows(f):
    return [json.loads(l) for l in open(f)] if f and os.path.exists(f) else []
lw, lws, nul, phx, sql = rows(lw_f), rows(lws_f), rows(null_f), rows(phx_f), rows(sql_f)
def med(rs, k):
    xs = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(xs) if xs else None
def lat(rs, q):
    xs = [r["latency_ms_incl_retries"][q] for r in rs]
    return statistics.median(xs) if xs else None
def fmt(x, d=0):
    return "-" if x is None else f"{x:,.{d}f}"
hdr = ("| system | workload | spans/s (stored) | traces/s | p50 / p99 request ms | 503 retries "
       "| non-2xx final | all stored | peak RSS MiB | server CPU s |")
print("\n## OTLP ingest summary (medians; each run below)\n")
print(hdr); print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|")
def line(name, work, rs, key="e2e_spans_per_s"):
    if not rs:
        return
    s = med(rs, key)
    retries = sum(r["retries"].get("503", 0) for r in rs)
    non2xx = sum(v for r in rs for k, v in r["statuses"].items() if not k.startswith("2"))
    stored = "-" if key != "e2e_spans_per_s" else ("yes" if all(r.get("all_stored") for r in rs) else "NO")
    print(f"| {name} | {work} | {fmt(s)} | {fmt(s / 5 if s else None)} | {fmt(lat(rs,'p50'),1)} / {fmt(lat(rs,'p99'),1)} "
          f"| {retries} | {non2xx} | {stored} | {fmt(med(rs,'peak_rss_mb'))} | {fmt(med(rs,'server_cpu_s'),2)} |")
ts = int(traces) * 5; ps = int(ptraces) * 5
line(f"llmwatch (median of {len(lw)})", f"{ts:,} spans", lw)
for r in lw:
    line(f"  {r['label']}", f"{ts:,} spans", [r])
line(f"llmwatch (median of {len(lws)})", f"{ps:,} spans", lws)
line(f"Arize Phoenix {phx[0].get('version','') if phx else ''} ({len(phx)} run)", f"{ps:,} spans", phx)
line(f"null sink, sending only (median of {len(nul)})", f"{ts:,} spans", nul, key="send_spans_per_s")
s_lw, s_lws = med(lw, "e2e_spans_per_s"), med(lws, "e2e_spans_per_s")
s_null, s_phx = med(nul, "send_spans_per_s"), med(phx, "e2e_spans_per_s")
s_sql = med(sql, "spans_per_s")
if sql:
    print(f"| plain SQLite insert of the same spans, 1 commit per request (median of {len(sql)}) "
          f"| {ts:,} spans | {fmt(s_sql)} | - | - | - | - | - | - | - |")
    for r in sql:
        print(f"|   {r['label']} | {ts:,} spans | {fmt(r['spans_per_s'])} | - | - | - | - | - | - | - |")
ratios = {}
print()
if s_lw and s_sql:
    ratios["llmwatch_over_plain_sqlite"] = s_lw / s_sql
    per_run = ", ".join(f"{a['e2e_spans_per_s'] / b['spans_per_s']:.2f}x" for a, b in zip(lw, sql))
    print(f"llmwatch / plain SQLite insert (storage baseline), {ts:,} spans: {s_lw / s_sql:.2f}x "
          f"(ratio of medians; per run, same iteration: {per_run})")
if s_lw and s_null:
    ratios["llmwatch_over_null_sink"] = s_lw / s_null
    print(f"llmwatch / null sink (client ceiling), {ts:,} spans: {s_lw / s_null:.2f}x")
if s_lw and s_phx:
    ratios["llmwatch_over_phoenix"] = s_lw / s_phx
    print(f"llmwatch ({ts:,} spans) / Phoenix ({ps:,} spans): {s_lw / s_phx:,.0f}x")
if s_lws and s_phx:
    ratios["llmwatch_over_phoenix_same_size"] = s_lws / s_phx
    print(f"llmwatch / Phoenix, both {ps:,} spans: {s_lws / s_phx:,.0f}x")
if s_lw:
    print(f"target >= 200,000 spans/s stored: {'MET' if s_lw >= 200000 else 'NOT met'} ({s_lw:,.0f} median)")
bad = [(r["label"], r["check"]["mismatches"]) for r in lw + lws if r["check"]["mismatches"]]
for label, b in bad:
    print(f"MISMATCH {label}: {b}")
json.dump({"llmwatch": lw, "llmwatch_small": lws, "null_sink": nul, "phoenix": phx, "plain_sqlite": sql,
           "ratios": ratios},
          open(out, "w"), indent=1)
print(f"\nraw results: {out}")
EOF
exit $FAILED
