"""OTLP interop: the official `openai` client, instrumented by opentelemetry-instrumentation-openai-v2,
talking to the local stand-in (openai_standin.py), exporting with the OTLP/HTTP exporter to llmwatch.

The record ids are the trace ids of the spans, caught by an in-memory exporter on the same
TracerProvider. Expected values: model and token counts from the stand-in's answer (recomputed here
from the stand-in's documented formula as a self-check), cost from the hand-written prices in
otlp_sdk.py, stage and duration times from the spans as the SDK recorded them (what was sent).

Usage: python otlp_openai.py --url http://127.0.0.1:PORT --standin http://127.0.0.1:PORT2/v1
Prints CHECK lines like otlp_sdk.py.
"""

import argparse
import os
import sys
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from otlp_sdk import compare, cost_usd, emit, fetch_record, info  # noqa: E402

SERVICE = {"service.name": "otlp-interop-openai", "service.version": "0.9.1"}


def standin_usage(model, text, max_tokens=None):
    """The stand-in's documented formula (openai_standin.py docstring), written out again here."""
    prompt = 1000 + 10 * len(text)
    return dict(prompt=prompt, completion=max_tokens or 42, cached=768 if model == "gpt-4o" else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--standin", required=True)
    args = ap.parse_args()
    base = args.url.rstrip("/")

    import openai
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider(resource=Resource.create(SERVICE))
    mem = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=base + "/v1/traces")))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    app_tracer = provider.get_tracer("llmwatch-interop-app")

    client = openai.OpenAI(base_url=args.standin, api_key="sk-interop-dummy", max_retries=0)
    calls = []  # (label, request model, text, max_tokens, response or exception, chat span, parent)

    def chat(label, model, text, max_tokens=None, stream=False, parent=None):
        kw = dict(model=model, messages=[{"role": "user", "content": text}])
        if max_tokens:
            kw["max_tokens"] = max_tokens
        if stream:
            kw["stream"] = True
            kw["stream_options"] = {"include_usage": True}
        before = len(mem.get_finished_spans())
        try:
            r = client.chat.completions.create(**kw)
            if stream:
                chunks = list(r)
                usage = next(c.usage for c in chunks if c.usage is not None)
                r = dict(model=chunks[-1].model, usage=usage)
            else:
                r = dict(model=r.model, usage=r.usage)
        except openai.APIError as e:
            r = e
        new = [s for s in mem.get_finished_spans()[before:] if "gen_ai.operation.name" in s.attributes]
        calls.append((label, model, text, max_tokens, r, new[0] if len(new) == 1 else None, parent))

    chat("chat gpt-4o", "gpt-4o", "What is OpenTelemetry?")
    chat("chat gpt-4o-mini max_tokens=64", "gpt-4o-mini", "Summarize this.", max_tokens=64)
    chat("chat gpt-4o (2nd)", "gpt-4o", "A somewhat longer question about tracing, please.")
    chat("chat gpt-4o-mini streamed", "gpt-4o-mini", "Stream me a haiku.", stream=True)
    chat("chat unknown model (404)", "gpt-unknown", "hello")
    with app_tracer.start_as_current_span(
            "handle_request", attributes={"user.id": "user-openai-1",
                                          "session.id": "sess-openai-1"}) as root:
        chat("chat gpt-4o under an app span", "gpt-4o", "Inside an app request.", parent=root)

    emit("openai: force_flush returned True", True, provider.force_flush())
    spans = mem.get_finished_spans()
    by_trace = {}
    for s in spans:
        by_trace.setdefault(s.context.trace_id, []).append(s)
    emit("openai: spans captured (one chat span per call + the app span)", len(calls) + 1, len(spans))

    for label, model, text, max_tokens, r, gen, parent in calls:
        name = f"openai {label}"
        if gen is None:
            emit(f"{name}: [self-check] one chat span captured", "one", "none or several")
            continue
        tid = gen.context.trace_id
        trace_spans = sorted(by_trace[tid], key=lambda s: (s.parent is not None, s.start_time))
        root = trace_spans[0]
        rid = format(tid, "032x")
        rec = fetch_record(base, rid)
        duration = Fraction(root.end_time - root.start_time, 1_000_000)
        inference = Fraction(gen.end_time - gen.start_time, 1_000_000)
        e = dict(provider="openai", feature=SERVICE["service.name"], release=SERVICE["service.version"],
                 duration_ms=duration,
                 stages={"model_inference": inference}, bottleneck_stage="model_inference",
                 unaccounted_ms=duration - inference)
        if isinstance(r, Exception):
            # No response: model falls back to the request model, which no price table knows,
            # so the cost is null (README: an unknown model is unpriced, never $0).
            e.update(status="error", error_type=gen.attributes.get("error.type"), model=model,
                     input_tokens=0, output_tokens=0, cost=None)
            emit(f"{name}: [self-check] the client saw the stand-in's 404", 404,
                 getattr(r, "status_code", repr(r)))
        else:
            u = standin_usage(model, text, max_tokens)
            got_usage = dict(prompt=r["usage"].prompt_tokens, completion=r["usage"].completion_tokens,
                             cached=r["usage"].prompt_tokens_details.cached_tokens)
            emit(f"{name}: [self-check] client got the stand-in's usage", u, got_usage)
            # The instrumentation reports cache reads only if it sets this attribute
            # (openai-v2 2.4b0 does not for chat completions): what was sent is what counts.
            cached = gen.attributes.get("gen_ai.usage.cache_read.input_tokens", 0)
            if u["cached"] and not cached:
                info(f"{name}: the instrumentation did not report the {u['cached']} cached tokens;"
                     " expecting 0 cached")
            e.update(status="ok", error_type=None, model=r["model"], input_tokens=u["prompt"],
                     output_tokens=u["completion"], cached_input_tokens=cached,
                     cost=cost_usd(r["model"], u["prompt"], u["completion"], cached))
        # root start in ns -> whole ms: truncated (or rounded: the contract does not say)
        ts_ok = {root.start_time // 1_000_000, (root.start_time + 500_000) // 1_000_000}
        got_ts = rec.get("timestamp_ms") if rec else "no record"
        emit(f"{name}: timestamp_ms = root span start", root.start_time // 1_000_000,
             root.start_time // 1_000_000 if got_ts in ts_ok else got_ts)
        if parent is not None:
            e.update(user_id="user-openai-1", session_id="sess-openai-1")
        compare(name, e, rec)
    provider.shutdown()


if __name__ == "__main__":
    main()
