"""OTLP interop: the official OpenTelemetry Python SDK + OTLP/HTTP exporter against llmwatch.

Builds traces with explicit span start/end times (ns), exports them to URL/v1/traces with
opentelemetry-exporter-otlp-proto-http (protobuf, optionally gzip), then fetches each record from
GET /api/v1/requests/{id} and compares it with values computed here, independently of llmwatch:
tokens and cost from what was sent and a hand-written copy of data/prices.toml, stage times as the
union of each stage's span intervals (the contract), duration as the root span's.

Prints one line per check: CHECK<TAB>name<TAB>expected<TAB>actual (otlp.sh counts them; a numeric
value within tolerance is shown as the expected one). Other lines are informational.

Usage: python otlp_sdk.py --url http://127.0.0.1:PORT --mode protobuf|gzip [--grace S]
This module also holds the helpers (pricing, record fetch, comparison) that otlp_openai.py uses.
"""

import argparse
import gzip
import json
import secrets
import time
import urllib.error
import urllib.request
from fractions import Fraction

# USD per 1M tokens, copied by hand from data/prices.toml (openai section): input, output,
# cached_input. Snapshot names map to their base entry (no snapshot of these has its own entry;
# gpt-4o-2024-05-13 does, and is not used here).
PRICES = {
    "gpt-4o": ("2.50", "10.0", "1.25"),
    "gpt-4o-mini": ("0.15", "0.60", "0.075"),
    "gpt-5-mini": ("0.25", "2.0", "0.025"),
}
PRICED_AS = {
    "gpt-4o": "gpt-4o",
    "gpt-4o-2024-08-06": "gpt-4o",
    "gpt-4o-mini": "gpt-4o-mini",
    "gpt-4o-mini-2024-07-18": "gpt-4o-mini",
    "gpt-5-mini": "gpt-5-mini",
}

REL_MS = 1e-6  # stage / duration tolerance (relative)
ABS_USD = 1e-9  # cost tolerance


def cost_usd(model, input_tokens, output_tokens, cached=0):
    """README 'Cost': (input - cached) x input + cached x cached price + output x output, per 1M."""
    inp, out, cached_p = (Fraction(p) for p in PRICES[PRICED_AS[model]])
    c = (Fraction(input_tokens - cached) * inp + Fraction(cached) * cached_p
         + Fraction(output_tokens) * out) / 1_000_000
    return c


# ---------------------------------------------------------------------------------------------
# Output and comparison
# ---------------------------------------------------------------------------------------------

def emit(name, expected, actual):
    def s(v):
        return v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    print("CHECK\t%s\t%s\t%s" % (name, s(expected), s(actual)), flush=True)


def info(msg):
    print("     " + msg, flush=True)


def close(exp, act, rel=0.0, abs_=0.0):
    if isinstance(exp, bool) or isinstance(act, bool):
        return exp == act
    if isinstance(exp, (int, float, Fraction)) and isinstance(act, (int, float)):
        return abs(float(exp) - float(act)) <= max(abs_, rel * abs(float(exp)))
    return exp == act


def shown(exp, act, rel=0.0, abs_=0.0):
    """act, with every number that is within tolerance of exp replaced by exp (for display)."""
    if isinstance(exp, dict) and isinstance(act, dict):
        return {k: shown(exp[k], act[k], rel, abs_) if k in exp else act[k] for k in act}
    if close(exp, act, rel, abs_):
        return exp
    return act


def plain(v):
    if isinstance(v, Fraction):
        return float(v)
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def compare(name, exp, rec):
    """One check per group of fields present in exp. rec is the fetched record (or None)."""
    groups = [
        ("identity", ["model", "provider", "user_id", "session_id", "feature", "release",
                      "attributes"], 0.0, 0.0),
        ("tokens", ["input_tokens", "output_tokens", "cached_input_tokens",
                    "cache_write_tokens", "reasoning_tokens"], 0.0, 0.0),
        ("status", ["status", "error_type"], 0.0, 0.0),
        ("timing", ["timestamp_ms", "duration_ms", "stages", "unaccounted_ms",
                    "bottleneck_stage"], REL_MS, 1e-6),
        ("cost", ["cost"], 0.0, ABS_USD),
    ]
    for group, fields, rel, abs_ in groups:
        e = {f: plain(exp[f]) for f in fields if f in exp}
        if not e:
            continue
        if rec is None:
            emit(f"{name}: {group}", e, "no record")
            continue
        a = {f: rec.get(f, "<missing>") for f in e}
        if isinstance(e.get("attributes"), dict) and isinstance(a["attributes"], dict):
            # The contract maps llmwatch.attr.KEY -> attributes[KEY]; llmwatch may add keys of
            # its own (it does: operation, finish_reason, ...), so only the sent keys are judged.
            a["attributes"] = {k: a["attributes"].get(k, "<missing>") for k in e["attributes"]}
        emit(f"{name}: {group}", e, shown(e, a, rel, abs_))


def get(url, timeout=5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def fetch_record(base, request_id, wait_s=5.0):
    deadline = time.monotonic() + wait_s
    while True:
        status, body = get(f"{base}/api/v1/requests/{request_id}")
        if status == 200:
            return body
        if time.monotonic() >= deadline:
            info(f"GET /api/v1/requests/{request_id}: {status} after {wait_s} s")
            return None
        time.sleep(0.1)


def union_ms(intervals):
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return Fraction(total, 1_000_000)


GENERATION_OPS = {"chat", "text_completion", "generate_content", "embeddings"}
NAMED_STAGES = {"preprocessing", "guardrail", "postprocessing"}


def stage_of(name, attrs):
    """The contract's classification of a span into a stage (None = not a generation/stage)."""
    op = attrs.get("gen_ai.operation.name")
    if op in GENERATION_OPS:
        return "model_inference"
    if op == "execute_tool":
        return "tool_execution"
    if "llmwatch.stage" in attrs:
        return attrs["llmwatch.stage"]
    if name in NAMED_STAGES:
        return name
    return name


def expected_timing(spans):
    """spans: [(name, parent_index or None, start_ns, end_ns, attrs)] with the root first."""
    root = spans[0]
    per_stage = {}
    root_attrs = root[4]
    if root_attrs.get("gen_ai.operation.name") in GENERATION_OPS:
        per_stage["model_inference"] = [(root[2], root[3])]
    for name, parent, s, e, attrs in spans[1:]:
        per_stage.setdefault(stage_of(name, attrs), []).append((s, e))
    stages = {k: union_ms(v) for k, v in per_stage.items()}
    duration = Fraction(root[3] - root[2], 1_000_000)
    out = {
        "timestamp_ms": root[2] // 1_000_000,
        "duration_ms": duration,
        "stages": stages,
        "unaccounted_ms": max(duration - sum(stages.values(), Fraction(0)), Fraction(0)),
    }
    if stages:
        out["bottleneck_stage"] = max(stages, key=lambda k: stages[k])
    return out


# ---------------------------------------------------------------------------------------------
# The SDK scenarios
# ---------------------------------------------------------------------------------------------

def ms(x):
    """milliseconds (str or number, may have 6 decimals) -> integer ns, exactly."""
    return int(Fraction(str(x)) * 1_000_000)


def gen_attrs(model, response_model, inp, out, cached=None, reasoning=None, legacy=False):
    a = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    if legacy:
        a["gen_ai.system"] = "openai"
        a["gen_ai.usage.prompt_tokens"] = inp
        a["gen_ai.usage.completion_tokens"] = out
    else:
        a["gen_ai.provider.name"] = "openai"
        a["gen_ai.usage.input_tokens"] = inp
        a["gen_ai.usage.output_tokens"] = out
    if response_model:
        a["gen_ai.response.model"] = response_model
    if cached is not None:
        a["gen_ai.usage.cache_read.input_tokens"] = cached
    if reasoning is not None:
        a["gen_ai.usage.reasoning.output_tokens"] = reasoning
    return a


def scenarios(tag, resource):
    """Each scenario: dict(name, spans=[(name, parent, start_ms, end_ms, attrs, error)], ...).

    Times are offsets in ms from the trace's (whole-millisecond) base time."""
    feature_default = resource["service.name"]
    release_default = resource["service.version"]
    sc = []

    # 1. A typical request: root + preprocessing / guardrail / chat / postprocessing.
    sc.append(dict(
        name="basic",
        spans=[
            ("handle_request", None, "0", "250.000001",
             {"user.id": f"user-{tag}-1", "session.id": f"sess-{tag}-1",
              "llmwatch.feature": "support-chat", "llmwatch.attr.tenant": "acme",
              # a key llmwatch also derives itself (from gen_ai.operation.name): the sent one wins
              "llmwatch.attr.operation": "triage"}, None),
            ("preprocessing", 0, "0.5", "12.845678", {}, None),
            ("guardrail", 0, "13", "33.5", {}, None),
            ("chat gpt-4o", 0, "34", "214.123456",
             gen_attrs("gpt-4o", "gpt-4o-2024-08-06", 1200, 300, cached=400), None),
            ("postprocessing", 0, "214.5", "230.25", {}, None),
        ],
        gens=[("gpt-4o-2024-08-06", 1200, 300, 400, 0)],
        identity=dict(model="gpt-4o-2024-08-06", provider="openai", user_id=f"user-{tag}-1",
                      session_id=f"sess-{tag}-1", feature="support-chat",
                      release=release_default, attributes={"tenant": "acme", "operation": "triage"}),
        status=dict(status="ok", error_type=None),
    ))
    # Hand check of the generic computation for this one (fails loudly if the helper is wrong).
    sc[-1]["hand"] = dict(stages={"preprocessing": Fraction("12.345678"), "guardrail": Fraction("20.5"),
                                  "model_inference": Fraction("180.123456"),
                                  "postprocessing": Fraction("15.75")},
                          duration_ms=Fraction("250.000001"),
                          cost=Fraction(800 * 2500 + 400 * 1250 + 300 * 10000, 10**9))

    # 2. Agent loop: two generations of different models, overlapping + nested tool spans,
    #    a custom stage, a span put into a stage by llmwatch.stage.
    sc.append(dict(
        name="agent loop",
        spans=[
            ("agent_run", None, "0", "260.5",
             {"user.id": f"user-{tag}-2", "llmwatch.release": "v2.0.0"}, None),
            ("chat gpt-4o", 0, "0.25", "100", gen_attrs("gpt-4o", "gpt-4o-2024-08-06", 2000, 150, cached=1024), None),
            ("execute_tool get_weather", 0, "100", "160.000002",
             {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"}, None),
            ("execute_tool get_time", 2, "120", "150",
             {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_time"}, None),
            ("execute_tool search", 0, "170", "180.5",
             {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}, None),
            ("chat gpt-4o-mini", 0, "181", "241.75",
             gen_attrs("gpt-4o-mini", "gpt-4o-mini-2024-07-18", 3000, 400), None),
            ("rerank", 0, "242", "247.125", {}, None),
            ("moderation", 0, "247.5", "250", {"llmwatch.stage": "guardrail"}, None),
        ],
        gens=[("gpt-4o-2024-08-06", 2000, 150, 1024, 0), ("gpt-4o-mini-2024-07-18", 3000, 400, 0, 0)],
        identity=dict(provider="openai", user_id=f"user-{tag}-2", feature=feature_default,
                      release="v2.0.0"),
        model_one_of=["gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"],
        status=dict(status="ok", error_type=None),
    ))
    sc[-1]["hand"] = dict(stages={"model_inference": Fraction("99.75") + Fraction("60.75"),
                                  "tool_execution": Fraction("60.000002") + Fraction("10.5"),
                                  "rerank": Fraction("5.125"), "guardrail": Fraction("2.5")},
                          duration_ms=Fraction("260.5"),
                          cost=Fraction(976 * 2500 + 1024 * 1250 + 150 * 10000
                                        + 3000 * 150 + 400 * 600, 10**9))

    # 3. A lone generation span as the root, legacy token attributes, gen_ai.system, reasoning
    #    tokens, no response model, and llmwatch.request_id choosing the record id.
    rid = f"interop-{tag}-{secrets.token_hex(4)}"
    sc.append(dict(
        name="lone generation (legacy attrs)",
        spans=[("chat gpt-5-mini", None, "0", "1234.567891",
                dict(gen_attrs("gpt-5-mini", None, 5000, 800, reasoning=512, legacy=True),
                     **{"llmwatch.request_id": rid}), None)],
        gens=[("gpt-5-mini", 5000, 800, 0, 512)],
        request_id=rid,
        identity=dict(model="gpt-5-mini", provider="openai", feature=feature_default,
                      release=release_default, user_id=None, session_id=None),
        status=dict(status="ok", error_type=None),
    ))
    sc[-1]["hand"] = dict(stages={"model_inference": Fraction("1234.567891")},
                          duration_ms=Fraction("1234.567891"),
                          cost=Fraction(5000 * 250 + 800 * 2000, 10**9))

    # 4. Error: root status ERROR with error.type.
    sc.append(dict(
        name="error",
        spans=[
            ("handle_request", None, "0", "50.5",
             {"user.id": f"user-{tag}-4", "error.type": "RateLimitError"}, "rate limited"),
            ("chat gpt-4o-mini", 0, "1", "45",
             gen_attrs("gpt-4o-mini", "gpt-4o-mini-2024-07-18", 800, 0), None),
        ],
        gens=[("gpt-4o-mini-2024-07-18", 800, 0, 0, 0)],
        identity=dict(model="gpt-4o-mini-2024-07-18", provider="openai", user_id=f"user-{tag}-4"),
        status=dict(status="error", error_type="RateLimitError"),
    ))

    # 5. Split, children first: children exported, then (later export) the root.
    #    llmwatch.request_id on a child span.
    rid5 = f"interop-{tag}-split-{secrets.token_hex(4)}"
    sc.append(dict(
        name="split export (children first)",
        split="children_first",
        spans=[
            ("handle_request", None, "0", "120", {"session.id": f"sess-{tag}-5"}, None),
            ("preprocessing", 0, "0", "20.000001", {}, None),
            ("chat gpt-4o-mini", 0, "20.5", "110",
             dict(gen_attrs("gpt-4o-mini", "gpt-4o-mini-2024-07-18", 1500, 250, cached=500),
                  **{"llmwatch.request_id": rid5}), None),
        ],
        gens=[("gpt-4o-mini-2024-07-18", 1500, 250, 500, 0)],
        request_id=rid5,
        identity=dict(model="gpt-4o-mini-2024-07-18", provider="openai", session_id=f"sess-{tag}-5"),
        status=dict(status="ok", error_type=None),
    ))

    # 6. Split, root first: the root exported alone, the children in a later export.
    sc.append(dict(
        name="split export (root first)",
        split="root_first",
        spans=[
            ("handle_request", None, "0", "300", {"user.id": f"user-{tag}-6"}, None),
            ("chat gpt-4o", 0, "10", "200.5", gen_attrs("gpt-4o", "gpt-4o-2024-08-06", 900, 90), None),
            ("postprocessing", 0, "200.5", "290.000003", {}, None),
        ],
        gens=[("gpt-4o-2024-08-06", 900, 90, 0, 0)],
        identity=dict(model="gpt-4o-2024-08-06", provider="openai", user_id=f"user-{tag}-6"),
        status=dict(status="ok", error_type=None),
    ))
    return sc


def expected_for(s):
    e = {}
    e.update(s["identity"])
    e.update(s["status"])
    e["input_tokens"] = sum(g[1] for g in s["gens"])
    e["output_tokens"] = sum(g[2] for g in s["gens"])
    e["cached_input_tokens"] = sum(g[3] for g in s["gens"])
    e["cache_write_tokens"] = 0
    e["reasoning_tokens"] = sum(g[4] for g in s["gens"])
    e["cost"] = sum((cost_usd(g[0], g[1], g[2], g[3]) for g in s["gens"]), Fraction(0))
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--mode", choices=["protobuf", "gzip", "burst"], default="protobuf")
    ap.add_argument("--grace", type=float, default=None,
                    help="llmwatch's [otlp] grace_period_s: also test a trace whose root never arrives")
    args = ap.parse_args()
    base = args.url.rstrip("/")
    if args.mode == "burst":
        return burst(base)
    tag = "pb" if args.mode == "protobuf" else "gz"

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SimpleSpanProcessor,
                                                SpanExporter, SpanExportResult)
    from opentelemetry.trace import Status, StatusCode

    class Recording(SpanExporter):
        """Delegates to the OTLP exporter and remembers each export's result."""

        def __init__(self, inner):
            self.inner, self.results = inner, []

        def export(self, spans):
            r = self.inner.export(spans)
            self.results.append((len(spans), r))
            return r

        def shutdown(self):
            self.inner.shutdown()

        def force_flush(self, timeout_millis=30000):
            return True

    resource_attrs = {"service.name": f"otlp-interop-sdk-{tag}", "service.version": "1.2.3"}
    exporter = Recording(OTLPSpanExporter(
        endpoint=base + "/v1/traces",
        compression=Compression.Gzip if args.mode == "gzip" else Compression.NoCompression,
        timeout=10))
    # protobuf: BatchSpanProcessor (a trace's spans usually arrive in one export);
    # gzip: SimpleSpanProcessor (one export per span: every trace arrives in pieces).
    processor = (BatchSpanProcessor(exporter, schedule_delay_millis=200) if args.mode == "protobuf"
                 else SimpleSpanProcessor(exporter))
    provider = TracerProvider(resource=Resource.create(resource_attrs))
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("llmwatch-interop")

    base_ms = int(time.time() * 1000) - 600_000  # ten minutes ago, whole milliseconds
    flushes_ok = True
    done = []  # (scenario, request_id, timeline)
    for i, s in enumerate(scenarios(tag, resource_attrs)):
        t0 = (base_ms + 1000 * i) * 1_000_000
        timeline = [(n, p, t0 + ms(a), t0 + ms(b), attrs) for n, p, a, b, attrs, _ in s["spans"]]
        objs = []
        for (n, p, st, en, attrs), spec in zip(timeline, s["spans"]):
            ctx = trace.set_span_in_context(objs[p]) if p is not None else None
            objs.append(tracer.start_span(n, context=ctx, start_time=st, attributes=attrs,
                                          kind=trace.SpanKind.CLIENT if "gen_ai.operation.name" in attrs
                                          else trace.SpanKind.INTERNAL))
            if spec[5]:
                objs[-1].set_status(Status(StatusCode.ERROR, spec[5]))

        def end(idx):
            for k in idx:
                objs[k].end(end_time=timeline[k][3])

        children = list(range(len(objs) - 1, 0, -1))  # innermost last-started first
        split = s.get("split")
        if split == "root_first":
            end([0])
            flushes_ok &= provider.force_flush()
            time.sleep(0.3)
            end(children)
        elif split == "children_first":
            end(children)
            flushes_ok &= provider.force_flush()
            time.sleep(0.3)
            end([0])
        else:
            end(children + [0])
        rid = s.get("request_id") or format(objs[0].get_span_context().trace_id, "032x")
        done.append((s, rid, timeline))
    flushes_ok &= provider.force_flush()

    emit(f"sdk/{args.mode}: force_flush returned True", True, bool(flushes_ok))
    n_spans = sum(len(s["spans"]) for s, _, _ in done)
    emit(f"sdk/{args.mode}: every export succeeded ({n_spans} spans)",
         [n_spans, "SUCCESS"],
         [sum(n for n, _ in exporter.results),
          "SUCCESS" if all(r == SpanExportResult.SUCCESS for _, r in exporter.results)
          else [str(r) for _, r in exporter.results]])
    info(f"sdk/{args.mode}: {len(exporter.results)} exports")

    for s, rid, timeline in done:
        exp = expected_for(s)
        exp.update(expected_timing(timeline))
        hand = s.get("hand")
        if hand:  # the generic computation must agree with the hand-written numbers
            assert exp["stages"] == hand["stages"], (exp["stages"], hand["stages"])
            assert exp["duration_ms"] == hand["duration_ms"]
            assert exp["cost"] == hand["cost"], (exp["cost"], hand["cost"])
        rec = fetch_record(base, rid)
        name = f"sdk/{args.mode} {s['name']}"
        if "model_one_of" in s:
            got = rec.get("model") if rec else "no record"
            emit(f"{name}: model is one of the generations' models", True,
                 got in s["model_one_of"] or got)
        compare(name, exp, rec)

    if args.grace is not None:
        rootless(base, tracer, provider, args, tag)
    if args.mode == "protobuf":
        raw_protobuf(base)
    provider.shutdown()


def rootless(base, tracer, provider, args, tag):
    """A trace whose root span is never exported: a record after the grace period."""
    from opentelemetry import trace
    t0 = (int(time.time() * 1000) - 300_000) * 1_000_000
    root = tracer.start_span("handle_request", start_time=t0)  # never ended -> never exported
    ctx = trace.set_span_in_context(root)
    g = tracer.start_span("chat gpt-4o", context=ctx, start_time=t0 + ms("5"),
                          attributes=gen_attrs("gpt-4o", "gpt-4o-2024-08-06", 640, 64, cached=128))
    g.end(end_time=t0 + ms("105.5"))
    provider.force_flush()
    tid = format(root.get_span_context().trace_id, "032x")
    sent = time.monotonic()
    rec = fetch_record(base, tid, wait_s=args.grace + 10)
    name = f"sdk/{args.mode} root never arrives"
    if rec is not None:
        info(f"{name}: record after {time.monotonic() - sent:.1f} s (grace_period_s = {args.grace})")
    e = dict(model="gpt-4o-2024-08-06", provider="openai", input_tokens=640, output_tokens=64,
             cached_input_tokens=128, cost=cost_usd("gpt-4o-2024-08-06", 640, 64, 128))
    compare(name, e, rec)

    # The root turns up after all (after the grace period): the contract's "spans of one trace
    # sent in several exports (any order) converge to the same record" -> the record takes the
    # root's time, duration and attributes, and still counts the generation once.
    root.set_attribute("user.id", f"user-{tag}-late")
    root.end(end_time=t0 + ms("200.25"))
    provider.force_flush()
    deadline = time.monotonic() + 5
    while True:
        rec = fetch_record(base, tid)
        if (rec or {}).get("user_id") == f"user-{tag}-late" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    e.update(user_id=f"user-{tag}-late", timestamp_ms=t0 // 1_000_000, duration_ms=Fraction("200.25"),
             stages={"model_inference": Fraction("100.5")}, unaccounted_ms=Fraction("99.75"))
    compare(f"sdk/{args.mode} root arriving after the grace period", e, rec)


def raw_protobuf(base):
    """POST an ExportTraceServiceRequest built by the SDK's own encoder with urllib; decode the
    response as ExportTraceServiceResponse; send the same body again (an exporter retry) and
    gzip-encoded: the record must not count the spans twice."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "otlp-interop-raw"}))
    tp.add_span_processor(SimpleSpanProcessor(mem))
    tr = tp.get_tracer("raw")
    t0 = (int(time.time() * 1000) - 200_000) * 1_000_000
    sp = tr.start_span("chat gpt-4o-mini", start_time=t0,
                       attributes=gen_attrs("gpt-4o-mini", "gpt-4o-mini-2024-07-18", 10_000, 1_000))
    sp.end(end_time=t0 + ms("75.25"))
    body = encode_spans(mem.get_finished_spans()).SerializeToString()
    tid = format(sp.get_span_context().trace_id, "032x")

    def post(data, headers):
        req = urllib.request.Request(base + "/v1/traces", data=data, method="POST",
                                     headers={"content-type": "application/x-protobuf", **headers})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers.get("content-type", ""), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("content-type", ""), e.read()

    status, ctype, resp = post(body, {})
    emit("raw protobuf POST: status", 200, status)
    emit("raw protobuf POST: response content-type", "application/x-protobuf", ctype.split(";")[0].strip())
    try:
        parsed = ExportTraceServiceResponse.FromString(resp)
        verdict = ("parses, rejected_spans=%d" % parsed.partial_success.rejected_spans)
    except Exception as e:  # noqa: BLE001
        verdict = f"does not parse: {e}: {resp[:80]!r}"
    emit("raw protobuf POST: body is an ExportTraceServiceResponse", "parses, rejected_spans=0", verdict)
    rec1 = fetch_record(base, tid)
    status2, _, _ = post(body, {})
    status3, _, _ = post(gzip.compress(body), {"content-encoding": "gzip"})
    emit("raw protobuf re-sent (plain, then gzip): statuses", [200, 200], [status2, status3])
    rec = fetch_record(base, tid)
    e = dict(model="gpt-4o-mini-2024-07-18", input_tokens=10_000, output_tokens=1_000,
             cost=cost_usd("gpt-4o-mini", 10_000, 1_000), duration_ms=Fraction("75.25"),
             stages={"model_inference": Fraction("75.25")})
    compare("raw protobuf re-sent 3 times: counted once", e, rec)

    # OTLP/HTTP: a 4xx answer's body is a protobuf google.rpc.Status.
    from google.rpc.status_pb2 import Status as RpcStatus
    status, ctype, resp = post(b"\x0a\xff\xff\xff\xff\x0f\x12", {})
    try:
        RpcStatus.FromString(resp)
        verdict = "parses"
    except Exception as e:  # noqa: BLE001
        verdict = f"does not parse: {e}: {resp[:80]!r}"
    emit("malformed protobuf: 400 with a google.rpc.Status body",
         [400, "application/x-protobuf", "parses"], [status, ctype.split(";")[0].strip(), verdict])
    if rec1 is None:
        info("raw protobuf: no record after the first POST")


def burst(base, n_traces=480, threads=24, per_export=4):
    """Back-pressure: many concurrent exports against a server with a tiny writer queue. 503s
    (with Retry-After) are allowed; the exporter retries them, so every export must end in
    SUCCESS and every trace must have its record, counted once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "otlp-interop-burst"}))
    tp.add_span_processor(SimpleSpanProcessor(mem))
    tr = tp.get_tracer("burst")
    t0 = (int(time.time() * 1000) - 100_000) * 1_000_000
    sent = {}
    for i in range(n_traces):
        inp, out = 100 + i, 10 + i % 7
        sp = tr.start_span("chat gpt-4o-mini", start_time=t0 + i * 1_000_000,
                           attributes=gen_attrs("gpt-4o-mini", "gpt-4o-mini-2024-07-18", inp, out))
        sp.end(end_time=t0 + i * 1_000_000 + 500_000 + i)
        sent[format(sp.get_span_context().trace_id, "032x")] = (inp, out)
    spans = list(mem.get_finished_spans())
    batches = [spans[i:i + per_export] for i in range(0, len(spans), per_export)]

    lock = threading.Lock()
    statuses = {}
    no_retry_after = []

    def hook(r, *_a, **_k):
        with lock:
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 503 and not r.headers.get("retry-after"):
                no_retry_after.append(r.status_code)

    def work(batch):
        sess = requests.Session()
        sess.hooks["response"].append(hook)
        exp = OTLPSpanExporter(endpoint=base + "/v1/traces", session=sess, timeout=60)
        try:
            return exp.export(batch)
        finally:
            exp.shutdown()

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        results = list(ex.map(work, batches))
    info(f"burst: {len(batches)} exports of {per_export} spans from {threads} threads in "
         f"{time.monotonic() - started:.1f} s; HTTP statuses seen: {dict(sorted(statuses.items()))}")
    if not statuses.get(503):
        info("burst: no 503 was provoked, so the retry path was not exercised this time")
    emit("burst: every export ended in SUCCESS (503s retried by the exporter)",
         len(batches), sum(r == SpanExportResult.SUCCESS for r in results))
    emit("burst: every 503 carried Retry-After", 0, len(no_retry_after))
    wrong, missing, total_cost = [], 0, 0.0
    for tid, (inp, out) in sent.items():
        rec = fetch_record(base, tid, wait_s=5.0)
        if rec is None:
            missing += 1
            continue
        if (rec["input_tokens"], rec["output_tokens"]) != (inp, out):
            wrong.append((tid, rec["input_tokens"], rec["output_tokens"], inp, out))
        total_cost += rec["cost"] or 0.0
    emit("burst: every trace has its record, tokens counted once", [n_traces, 0],
         [n_traces - missing, len(wrong)] if not wrong else [n_traces - missing, wrong[:3]])
    exp_cost = sum((cost_usd("gpt-4o-mini", i, o) for i, o in sent.values()), Fraction(0))
    emit("burst: total cost of the records", float(exp_cost),
         float(exp_cost) if abs(total_cost - float(exp_cost)) <= ABS_USD * n_traces else total_cost)


if __name__ == "__main__":
    main()
