#!/usr/bin/env python3
"""Judge of POST /v1/metrics: the OpenTelemetry Python SDK's MeterProvider and OTLP/HTTP metric
exporter (cumulative temporality, the SDK default) send the GenAI client histograms of an app
that sends no traces; llmwatch's cost report for that app (feature = service.name) must show
the requests, tokens and cost computed here from what was recorded. Exporting the same
cumulative state twice must not count it twice.

Prints CHECK<TAB>name<TAB>expected<TAB>actual lines (see otlp.sh).
"""
from __future__ import annotations

import argparse
import json
import time
import urllib.parse
import uuid

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from otlp_sdk import cost_usd, emit, get, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    args = ap.parse_args()

    service = "metrics-only-" + uuid.uuid4().hex[:8]
    exporter = OTLPMetricExporter(endpoint=args.url + "/v1/metrics")
    # A long interval: exports happen only on force_flush.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": service,
                                                        "service.version": "9.9"}),
                             metric_readers=[reader])
    meter = provider.get_meter("llm-app")
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")

    calls = [  # model, input tokens, output tokens, seconds, error type
        ("gpt-4o", 1200, 300, 1.25, None),
        ("gpt-4o", 800, 100, 0.75, None),
        ("gpt-4o-mini", 5000, 700, 2.5, None),
        ("gpt-4o-mini", 0, 0, 0.05, "RateLimitError"),
    ]
    later = [("gpt-4o", 2000, 50, 0.5, None)]

    def record(batch):
        for model, inp, out, secs, err in batch:
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                     "gen_ai.request.model": model}
            if err:
                attrs["error.type"] = err
            duration.record(secs, attributes=attrs)
            if not err:
                tokens.record(inp, attributes={**attrs, "gen_ai.token.type": "input"})
                tokens.record(out, attributes={**attrs, "gen_ai.token.type": "output"})

    start_ms = int(time.time() * 1000) - 60_000
    record(calls)
    ok1 = provider.force_flush()
    # Nothing new recorded: the same cumulative state is exported again.
    ok2 = provider.force_flush()
    record(later)
    ok3 = provider.force_flush()
    provider.shutdown()
    emit("metrics: exports succeeded", [True, True, True], [ok1, ok2, ok3])

    sent = calls + later
    exp_requests = len(sent)
    exp_errors = sum(1 for c in sent if c[4])
    exp_tokens = sum(c[1] + c[2] for c in sent)
    # Metrics carry no cached-token split: full input price (hand-written prices in otlp_sdk).
    exp_cost = float(sum(cost_usd(m, i, o) for m, i, o, _, _ in sent))

    q = urllib.parse.urlencode({"from": start_ms, "to": int(time.time() * 1000) + 120_000,
                                "feature": service, "group_by": "model"})
    status, report = get(f"{args.url}/api/v1/reports/cost?{q}")
    if status != 200:
        info(f"cost report: HTTP {status}")
        report = {}
    emit("metrics: requests, tokens of the app (cumulative exports counted once)",
         [exp_requests, exp_tokens],
         [report.get("total_requests"), report.get("total_tokens")])
    got_cost = report.get("total_cost")
    emit("metrics: cost (nano-USD, full input price)", round(exp_cost * 1e9),
         None if got_cost is None else round(got_cost * 1e9))
    groups = {g.get("key"): g.get("requests") for g in report.get("groups", [])}
    emit("metrics: requests by model", {"gpt-4o": 3, "gpt-4o-mini": 2}, groups)

    q = urllib.parse.urlencode({"from": start_ms, "to": int(time.time() * 1000) + 120_000,
                                "feature": service})
    status, ops = get(f"{args.url}/api/v1/operations?{q}")
    errors = (ops or {}).get("errors")
    emit("metrics: errors (points with error.type)", exp_errors, errors)
    if status != 200:
        info(f"operations: HTTP {status} {json.dumps(ops)[:200]}")


if __name__ == "__main__":
    main()
