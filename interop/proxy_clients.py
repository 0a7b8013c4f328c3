"""The official `openai` and `anthropic` SDKs (PyPI) against llmwatch's recording proxy, with
interop/proxy_upstream.py as the upstream. Each call is then looked up through llmwatch's API and
compared with what this script expects on its own: the stand-in's documented usage numbers (a copy
of its formulas below), mapped to the record's convention as the proxy contract says (cached and
cache-write tokens included in input tokens, reasoning tokens in output tokens), and a
hand-written copy of the prices in data/prices.toml.

Prints one line per check, "CHECK<TAB>name<TAB>expected<TAB>actual" (JSON values), and "note ..."
lines; interop/proxy.sh turns them into ok/FAIL lines.

  --mode main    every API, streaming and not, the x-llmwatch-* headers, what was forwarded,
                 timing, pass-through routes, upstream errors, concurrent streams
  --mode budget  a server whose budget for feature "capped" has enforce = true
  --mode aux     a server with add_stream_usage = true, timeout = "2s" and an Anthropic upstream
                 that refuses connections
"""

import argparse
import contextlib
import hashlib
import json
import re
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import warnings

warnings.simplefilter("ignore")  # the anthropic SDK's model deprecation notices

import anthropic  # noqa: E402
import httpx2  # noqa: E402  (what both SDKs use for HTTP; raw byte-level checks)
import openai  # noqa: E402

KEY_OPENAI = "sk-test-SECRET123"
KEY_ANTHROPIC = "sk-ant-SECRET456"
ANSWER = "The quick brown fox jumps over the lazy dog again."
TOK = ["input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
       "reasoning_tokens"]
# nano-USD per token (= USD per 1M tokens x 1000): input, cached input, cache write, output.
# Hand-copied from data/prices.toml; a model without a cache-write price uses its input price.
PRICES = {
    "gpt-4o-mini": (150, 75, 150, 600),
    "gpt-4.1-mini": (400, 100, 400, 1600),
    "o4-mini": (1100, 275, 1100, 4400),
    "claude-sonnet-4-5": (3000, 300, 3750, 15000),
    "claude-haiku-4-5": (1000, 100, 1250, 5000),
}
STANDIN_DELAY_MS = 200  # proxy_upstream.py's pause before the first content chunk
STANDIN_CONTENT_MS = 9 * 50  # then 10 content chunks 50 ms apart


# ---- output ------------------------------------------------------------------------------------

def j(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def check(name, expected, actual):
    print(f"CHECK\t{name}\t{j(expected)}\t{j(actual)}", flush=True)


def note(msg):
    print("note\t" + str(msg).replace("\t", " ").replace("\n", " "), flush=True)


@contextlib.contextmanager
def section(name):
    """A failure inside one scenario is one failed check, not the end of the run."""
    try:
        yield
    except Exception as e:  # noqa: BLE001
        check(f"{name}: ran without an unexpected exception", "no exception",
              f"{type(e).__name__}: {e}"[:400])
        traceback.print_exc()


# ---- the stand-in's numbers (a copy of proxy_upstream.py's documented formulas) --------------

def reasoning_model(model):
    return bool(re.match(r"o\d", model))


def chat_usage(model, last_text, max_tokens=None):
    completion = max_tokens or 300
    return {"prompt": 2000 + len(last_text), "cached": 1536, "completion": completion,
            "reasoning": completion // 4 if reasoning_model(model) else 0}


def responses_usage(model, text, max_output_tokens=None):
    out = max_output_tokens or 200
    return {"input": 1500 + len(text), "cached": 1024, "output": out,
            "reasoning": out // 4 if reasoning_model(model) else 0}


def anthropic_usage(last_text, max_tokens):
    return {"input": 40 + len(last_text), "cache_read": 4096, "cache_creation": 512,
            "output": min(max_tokens, 250)}


# ---- the contract's mapping to the record --------------------------------------------------

def rec_chat(u):
    return [u["prompt"], u["completion"], u["cached"], 0, u["reasoning"]]


def rec_responses(u):
    return [u["input"], u["output"], u["cached"], 0, u["reasoning"]]


def rec_anthropic(u):
    return [u["input"] + u["cache_read"] + u["cache_creation"], u["output"], u["cache_read"],
            u["cache_creation"], 0]


def openai_error_type(error):
    """README: the error body's error.code (OpenAI's specific reason, e.g. rate_limit_exceeded
    where error.type is only "requests"), else error.type, else http_<status>."""
    error = error or {}
    return error.get("code") or error.get("type")


def cost_nanos(model, tokens):
    if model not in PRICES:
        return None
    p_in, p_cached, p_write, p_out = PRICES[model]
    inp, out, cached, write, _ = tokens
    return (inp - cached - write) * p_in + cached * p_cached + write * p_write + out * p_out


# ---- HTTP helpers ------------------------------------------------------------------------------

def get_json(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


class Env:
    def __init__(self, url, upstream):
        self.url = url.rstrip("/")
        self.upstream = upstream.rstrip("/")

    def record(self, request_id, wait_s=5.0):
        """GET /api/v1/requests/{id}, polled: the writer commits asynchronously."""
        quoted = urllib.parse.quote(request_id, safe="")
        deadline = time.time() + wait_s
        while True:
            status, body = get_json(f"{self.url}/api/v1/requests/{quoted}")
            if status == 200:
                return body
            if time.time() > deadline:
                return None
            time.sleep(0.05)

    def search(self, **params):
        status, body = get_json(f"{self.url}/api/v1/requests?{urllib.parse.urlencode(params)}")
        return body["requests"] if status == 200 else None

    def seen(self, want_response=True):
        """The stand-in's last request (waiting, bounded, for its response digest)."""
        deadline = time.time() + 2
        while True:
            _, body = get_json(f"{self.upstream}/_seen")
            if not want_response or (body and "response_sha256" in body) or time.time() > deadline:
                return body or {}
            time.sleep(0.02)

    def upstream_count(self):
        return get_json(f"{self.upstream}/_count")[1]["count"]


class Wire:
    """httpx event hooks: what the SDK really sent (headers, body bytes) and got (headers)."""

    def __init__(self):
        self.req = None
        self.resp = None

    def on_request(self, request):
        self.req = {"headers": {k.lower(): v for k, v in request.headers.items()},
                    "body": request.read(), "url": str(request.url)}

    def on_response(self, response):
        self.resp = {"status": response.status_code,
                     "headers": {k.lower(): v for k, v in response.headers.items()}}

    def hooks(self):
        return {"request": [self.on_request], "response": [self.on_response]}


class Timer:
    """Wall-clock marks of one call, as the client sees it."""

    def __init__(self):
        self.t0 = time.time()
        self.first = None
        self.t1 = None

    def content(self):
        if self.first is None:
            self.first = time.time()

    def done(self):
        self.t1 = time.time()
        return self

    @property
    def ms(self):
        return (self.t1 - self.t0) * 1000


HEADERS = {  # the x-llmwatch-* headers of the main scenario
    "x-llmwatch-user": "user-42",
    "x-llmwatch-feature": "support-chat",
    "x-llmwatch-release": "prompt-v7",
    "x-llmwatch-session": "sess-0001",
    "x-llmwatch-attr-tier": "gold",
    "x-llmwatch-attr-question_category": "billing",
}
EXPECTED_LABELS = {"user_id": "user-42", "feature": "support-chat", "release": "prompt-v7",
                   "session_id": "sess-0001"}
EXPECTED_ATTRS = {"tier": "gold", "question_category": "billing"}


def generated_record_id(env, name, model, response_id):
    """The record of a call sent without x-llmwatch-request-id: a generated proxy-<ms>-<n> id,
    found by its model; the upstream's id is kept as attribute llmwatch.response_id."""
    rows = []
    for _ in range(100):
        rows = [row for row in env.search(model=model) or []
                if row["request_id"].startswith("proxy-")]
        if rows:
            break
        time.sleep(0.05)
    rid = rows[0]["request_id"] if rows else "(none)"
    rec = env.record(rid) or {}
    check(f"{name}: the response id is kept as llmwatch.response_id", response_id,
          (rec.get("attributes") or {}).get("llmwatch.response_id"))
    return rid


def verify(env, name, rid, *, model, provider, tokens, timer, stream, status="ok", error_type=None,
           usage_unknown=False, labels=EXPECTED_LABELS, attrs=EXPECTED_ATTRS, input_text=None,
           output_text=None, cost_model=None):
    """The record of one call against what this script expects."""
    rec = env.record(rid)
    if rec is None:
        check(f"{name}: recorded (GET /api/v1/requests/ID)", "found", f"no record {rid}")
        return None
    check(f"{name}: model, provider, status, error_type", [model, provider, status, error_type],
          [rec.get("model"), rec.get("provider"), rec.get("status"), rec.get("error_type")])
    check(f"{name}: tokens [input, output, cached, cache_write, reasoning]", tokens,
          [rec.get(k) for k in TOK])
    cost = rec.get("cost")
    check(f"{name}: cost (nano-USD{', null: usage unknown' if usage_unknown else ''})",
          None if usage_unknown else cost_nanos(cost_model or "", tokens),
          None if cost is None else round(cost * 1e9))
    got_attrs = rec.get("attributes") or {}
    want_attrs = dict(attrs)
    if usage_unknown is not None:  # None: not checked (an error answer)
        want_attrs["llmwatch.usage"] = "unknown" if usage_unknown else None
    check(f"{name}: user, feature, release, session, attributes (x-llmwatch-* headers)",
          [labels, want_attrs], [{k: rec.get(k) for k in labels},
                                 {k: got_attrs.get(k) for k in want_attrs}])
    dur = rec.get("duration_ms")
    mi = (rec.get("stages") or {}).get("model_inference")
    ts = rec.get("timestamp_ms")
    check(f"{name}: timestamp within the call, duration_ms <= the client's {timer.ms:.0f} ms, "
          "stage model_inference <= duration_ms",
          [True, True, True],
          [ts is not None and timer.t0 * 1000 - 2 <= ts <= timer.t1 * 1000 + 2,
           dur is not None and 0 < dur <= timer.ms + 2,
           mi is not None and dur is not None and 0 < mi <= dur + 0.5])
    ttft = rec.get("ttft_ms")
    if stream:
        check(f"{name}: ttft_ms >= the stand-in's {STANDIN_DELAY_MS} ms pause, < duration_ms, "
              f"duration_ms - ttft_ms >= {STANDIN_CONTENT_MS - 100} ms (content was still coming)",
              [True, True, True],
              [ttft is not None and ttft >= STANDIN_DELAY_MS - 10,
               ttft is not None and dur is not None and ttft < dur,
               ttft is not None and dur is not None and dur - ttft >= STANDIN_CONTENT_MS - 100])
        if ttft is None or dur is None or not (STANDIN_DELAY_MS - 10 <= ttft < dur):
            note(f"{name}: ttft_ms={ttft} duration_ms={dur}")
    else:
        check(f"{name}: no ttft_ms (not a stream)", None, ttft)
    if input_text is not None:
        check(f"{name}: input text (capture_content)", input_text, rec.get("input"))
    if output_text is not None:
        check(f"{name}: output text (capture_content)", output_text, rec.get("output"))
    return rec


def verify_forwarded(env, name, wire, *, path, key_header, key_value, body_unchanged=True):
    """What the stand-in received vs what the SDK sent."""
    seen = env.seen()
    sent = wire.req or {"headers": {}, "body": b""}
    h = seen.get("headers", {})
    check(f"{name}: upstream got {path} with the API key ({key_header})", [path, key_value],
          [seen.get("path"), h.get(key_header)])
    check(f"{name}: upstream got no x-llmwatch-* header", [],
          sorted(k for k in h if k.startswith("x-llmwatch")))
    check(f"{name}: upstream got accept-encoding: identity (recorded route)", "identity",
          h.get("accept-encoding"))
    skip = {"host", "content-length", "accept-encoding", "connection", "keep-alive",
            "transfer-encoding"}
    diff = {k: [v, h.get(k)] for k, v in sent["headers"].items()
            if k not in skip and not k.startswith("x-llmwatch") and h.get(k) != v}
    check(f"{name}: the SDK's other headers reached the upstream unchanged", {}, diff)
    if body_unchanged:
        check(f"{name}: request body forwarded byte for byte (sha256)",
              hashlib.sha256(sent["body"]).hexdigest(), seen.get("body_sha256"))
    return seen


def verify_response_headers(name, wire, seen, id_header):
    got = (wire.resp or {}).get("headers", {})
    sent = seen.get("response_headers", {})
    check(f"{name}: response headers {id_header}, x-standin reached the SDK",
          [sent.get(id_header), sent.get("x-standin")], [got.get(id_header), got.get("x-standin")])


# ---- main ------------------------------------------------------------------------------------

def main_mode(env):
    wire_o, wire_a = Wire(), Wire()
    oa = openai.OpenAI(base_url=f"{env.url}/proxy/openai/v1", api_key=KEY_OPENAI,
                       default_headers=HEADERS, max_retries=0, timeout=30,
                       http_client=openai.DefaultHttpxClient(event_hooks=wire_o.hooks()))
    an = anthropic.Anthropic(base_url=f"{env.url}/proxy/anthropic", api_key=KEY_ANTHROPIC,
                             default_headers=HEADERS, max_retries=0, timeout=30,
                             http_client=anthropic.DefaultHttpxClient(event_hooks=wire_a.hooks()))
    o_key = ("authorization", f"Bearer {KEY_OPENAI}")

    # 1. Chat Completions, not streamed.
    name = "chat (non-streaming)"
    with section(name):
        q = "What is the capital of France?"
        t = Timer()
        r = oa.chat.completions.create(
            model="gpt-4o-mini", max_tokens=321,
            messages=[{"role": "system", "content": "You are terse."},
                      {"role": "user", "content": q}],
            extra_headers={"x-llmwatch-request-id": "chat-1"})
        t.done()
        u = chat_usage("gpt-4o-mini", q, 321)
        check(f"{name}: the SDK got the answer and the usage",
              [ANSWER, u["prompt"], u["completion"], u["cached"]],
              [r.choices[0].message.content, r.usage.prompt_tokens, r.usage.completion_tokens,
               r.usage.prompt_tokens_details.cached_tokens])
        seen = verify_forwarded(env, name, wire_o, path="/v1/chat/completions",
                                key_header=o_key[0], key_value=o_key[1])
        check(f"{name}: the SDK saw the upstream's x-request-id", seen.get("response_headers", {})
              .get("x-request-id"), r._request_id)
        verify_response_headers(name, wire_o, seen, "x-request-id")
        verify(env, name, "chat-1", model="gpt-4o-mini-2024-07-18", provider="openai",
               tokens=rec_chat(u), timer=t, stream=False, cost_model="gpt-4o-mini",
               input_text=f"You are terse.\n{q}", output_text=ANSWER)

    # 2. No x-llmwatch-request-id: a generated id names the record (some servers repeat their
    # response ids); the response's id is kept as attribute llmwatch.response_id. A reasoning model.
    name = "chat o4-mini (no request-id header)"
    with section(name):
        q = "Prove that sqrt(2) is irrational."
        t = Timer()
        r = oa.chat.completions.create(model="o4-mini", max_completion_tokens=400,
                                       messages=[{"role": "user", "content": q}])
        t.done()
        u = chat_usage("o4-mini", q, 400)
        check(f"{name}: the SDK got reasoning_tokens", u["reasoning"],
              r.usage.completion_tokens_details.reasoning_tokens)
        check(f"{name}: response id looks like OpenAI's", True, r.id.startswith("chatcmpl-"))
        rid = generated_record_id(env, name, "o4-mini-2025-04-16", r.id)
        verify(env, name, rid, model="o4-mini-2025-04-16", provider="openai",
               tokens=rec_chat(u), timer=t, stream=False, cost_model="o4-mini",
               attrs=dict(EXPECTED_ATTRS, **{"llmwatch.response_id": r.id}))

    # 3. Chat streamed with stream_options.include_usage.
    name = "chat stream (include_usage)"
    with section(name):
        q = "Tell me a pangram."
        t = Timer()
        text, usage_chunks, n_chunks = "", [], 0
        for chunk in oa.chat.completions.create(
                model="gpt-4o-mini", max_tokens=222, stream=True,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": q}],
                extra_headers={"x-llmwatch-request-id": "chat-stream-usage"}):
            n_chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                t.content()
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                usage_chunks.append((len(chunk.choices), chunk.usage.prompt_tokens,
                                     chunk.usage.completion_tokens))
        t.done()
        u = chat_usage("gpt-4o-mini", q, 222)
        check(f"{name}: the SDK got the text and one final choices-[] usage chunk",
              [ANSWER, [[0, u["prompt"], u["completion"]]]], [text, [list(x) for x in usage_chunks]])
        incremental(name, t)
        verify_forwarded(env, name, wire_o, path="/v1/chat/completions",
                         key_header=o_key[0], key_value=o_key[1])
        verify(env, name, "chat-stream-usage", model="gpt-4o-mini-2024-07-18", provider="openai",
               tokens=rec_chat(u), timer=t, stream=True, cost_model="gpt-4o-mini",
               output_text=ANSWER)

    # 4. Chat streamed without include_usage: usage unknown, unpriced.
    name = "chat stream (no include_usage)"
    with section(name):
        t = Timer()
        text, got_usage = "", False
        for chunk in oa.chat.completions.create(
                model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Hi"}],
                extra_headers={"x-llmwatch-request-id": "chat-stream-nousage"}):
            if chunk.choices and chunk.choices[0].delta.content:
                t.content()
                text += chunk.choices[0].delta.content
            got_usage |= chunk.usage is not None
        t.done()
        check(f"{name}: the SDK got the text and no usage", [ANSWER, False], [text, got_usage])
        seen = env.seen()
        check(f"{name}: the request reached the upstream without stream_options (default "
              "add_stream_usage = false)", None, (seen.get("body") or {}).get("stream_options"))
        incremental(name, t)
        verify(env, name, "chat-stream-nousage", model="gpt-4o-mini-2024-07-18",
               provider="openai", tokens=[0, 0, 0, 0, 0], timer=t, stream=True,
               usage_unknown=True)
        rows = env.search(request_id="chat-stream-nousage") or []
        check(f"{name}: the search lists it unpriced (priced false, cost null)", [[False, None]],
              [[r.get("priced"), r.get("cost")] for r in rows])

    # 5. Responses, not streamed.
    name = "responses (non-streaming)"
    with section(name):
        q = "Summarize the plot of Hamlet."
        t = Timer()
        r = oa.responses.create(model="gpt-4.1-mini", input=q, max_output_tokens=150,
                                extra_headers={"x-llmwatch-request-id": "resp-1"})
        t.done()
        u = responses_usage("gpt-4.1-mini", q, 150)
        check(f"{name}: the SDK got output_text and the usage",
              [ANSWER, u["input"], u["cached"], u["output"]],
              [r.output_text, r.usage.input_tokens, r.usage.input_tokens_details.cached_tokens,
               r.usage.output_tokens])
        verify_forwarded(env, name, wire_o, path="/v1/responses",
                         key_header=o_key[0], key_value=o_key[1])
        verify(env, name, "resp-1", model="gpt-4.1-mini-2025-04-14", provider="openai",
               tokens=rec_responses(u), timer=t, stream=False, cost_model="gpt-4.1-mini",
               input_text=q, output_text=ANSWER)

    # 6. Responses streamed (typed events, usage in response.completed).
    name = "responses stream"
    with section(name):
        q = "Explain TCP slow start."
        t = Timer()
        text, types, completed_usage = "", [], None
        for ev in oa.responses.create(model="o4-mini", input=q, max_output_tokens=240, stream=True,
                                      extra_headers={"x-llmwatch-request-id": "resp-stream"}):
            types.append(ev.type)
            if ev.type == "response.output_text.delta":
                t.content()
                text += ev.delta
            if ev.type == "response.completed":
                completed_usage = ev.response.usage
        t.done()
        u = responses_usage("o4-mini", q, 240)
        check(f"{name}: the SDK got every typed event, the text and response.completed's usage",
              ["response.created", "response.completed", 18, ANSWER, u["reasoning"]],
              [types[0] if types else None, types[-1] if types else None, len(types), text,
               completed_usage.output_tokens_details.reasoning_tokens if completed_usage else None])
        incremental(name, t)
        verify(env, name, "resp-stream", model="o4-mini-2025-04-16", provider="openai",
               tokens=rec_responses(u), timer=t, stream=True, cost_model="o4-mini",
               output_text=ANSWER)

    # 7. Embeddings (the SDK asks for base64); not in the price table: unpriced.
    name = "embeddings"
    with section(name):
        inputs = ["the quick brown fox", "hello world"]
        t = Timer()
        r = oa.embeddings.create(model="text-embedding-3-small", input=inputs,
                                 extra_headers={"x-llmwatch-request-id": "emb-1"})
        t.done()
        tokens = sum(len(s.split()) for s in inputs) + len(inputs)
        check(f"{name}: the SDK decoded 2 vectors of 8 floats and the usage", [[8, 8], tokens],
              [[len(d.embedding) for d in r.data], r.usage.prompt_tokens])
        verify_forwarded(env, name, wire_o, path="/v1/embeddings",
                         key_header=o_key[0], key_value=o_key[1])
        verify(env, name, "emb-1", model="text-embedding-3-small", provider="openai",
               tokens=[tokens, 0, 0, 0, 0], timer=t, stream=False)

    name = "embeddings (no request id anywhere)"
    with section(name):
        t = Timer()
        oa.embeddings.create(model="text-embedding-3-small", input="one two three",
                             extra_headers={"x-llmwatch-feature": "emb-noid"})
        t.done()
        rows = []
        for _ in range(50):
            rows = env.search(feature="emb-noid") or []
            if rows:
                break
            time.sleep(0.05)
        ids = [r["request_id"] for r in rows]
        check(f"{name}: one record with a generated id proxy-<unix_ms>-<counter>", [True],
              [bool(re.fullmatch(r"proxy-\d{13}-\d+", i)) for i in ids])
        if ids:
            ms = int(ids[0].split("-")[1])
            check(f"{name}: the generated id's unix_ms is the call's time", True,
                  t.t0 * 1000 - 1000 <= ms <= t.t1 * 1000 + 1000)
            verify(env, name, ids[0], model="text-embedding-3-small", provider="openai",
                   tokens=[4, 0, 0, 0, 0], timer=t, stream=False,
                   labels={**EXPECTED_LABELS, "feature": "emb-noid"})

    # 8. Anthropic Messages, not streamed.
    a_key = ("authorization", f"Bearer {KEY_ANTHROPIC}")  # what anthropic 2.x sends for api_key
    name = "anthropic messages (non-streaming)"
    with section(name):
        q = "Name three primes."
        t = Timer()
        m = an.messages.create(model="claude-sonnet-4-5", max_tokens=1000, system="You are terse.",
                               messages=[{"role": "user", "content": q}],
                               extra_headers={"x-llmwatch-request-id": "msg-1"})
        t.done()
        u = anthropic_usage(q, 1000)
        check(f"{name}: the SDK got the text and the usage",
              [ANSWER, u["input"], u["cache_read"], u["cache_creation"], u["output"]],
              [m.content[0].text, m.usage.input_tokens, m.usage.cache_read_input_tokens,
               m.usage.cache_creation_input_tokens, m.usage.output_tokens])
        sent_key = (wire_a.req or {}).get("headers", {})
        key_header = "x-api-key" if "x-api-key" in sent_key else "authorization"
        a_key = (key_header, sent_key.get(key_header))
        check(f"{name}: the SDK sent the key ({key_header})", True,
              KEY_ANTHROPIC in (a_key[1] or ""))
        seen = verify_forwarded(env, name, wire_a, path="/v1/messages", key_header=a_key[0],
                                key_value=a_key[1])
        check(f"{name}: anthropic-version forwarded", sent_key.get("anthropic-version"),
              seen.get("headers", {}).get("anthropic-version"))
        check(f"{name}: the SDK saw the upstream's request-id",
              seen.get("response_headers", {}).get("request-id"), m._request_id)
        verify_response_headers(name, wire_a, seen, "request-id")
        rec = verify(env, name, "msg-1", model="claude-sonnet-4-5-20250929", provider="anthropic",
                     tokens=rec_anthropic(u), timer=t, stream=False, cost_model="claude-sonnet-4-5",
                     output_text=ANSWER)
        if rec is not None:
            check(f"{name}: input text has the system prompt and the message", [True, True],
                  ["You are terse." in (rec.get("input") or ""), q in (rec.get("input") or "")])

    # 9. Anthropic streamed through the SDK's stream helper; no request-id header (a generated
    #    id; message_start's id kept as an attribute); the older message_delta shape.
    name = "anthropic stream (haiku, no request-id header)"
    with section(name):
        q = "Count to ten."
        t = Timer()
        with an.messages.stream(model="claude-haiku-4-5", max_tokens=100,
                                messages=[{"role": "user", "content": q}]) as s:
            for ev in s:
                if ev.type == "content_block_delta":
                    t.content()
            final = s.get_final_message()
        t.done()
        u = anthropic_usage(q, 100)
        check(f"{name}: the SDK's final message: text, output_tokens, id",
              [ANSWER, u["output"], True],
              [final.content[0].text, final.usage.output_tokens, final.id.startswith("msg_01")])
        incremental(name, t)
        verify_forwarded(env, name, wire_a, path="/v1/messages", key_header=a_key[0],
                         key_value=a_key[1])
        rid = generated_record_id(env, name, "claude-haiku-4-5-20251001", final.id)
        verify(env, name, rid, model="claude-haiku-4-5-20251001", provider="anthropic",
               tokens=rec_anthropic(u), timer=t, stream=True, cost_model="claude-haiku-4-5",
               output_text=ANSWER, attrs=dict(EXPECTED_ATTRS, **{"llmwatch.response_id": final.id}))

    # 10. Anthropic streamed with create(stream=True); message_delta repeats the input counts.
    name = "anthropic stream (sonnet)"
    with section(name):
        q = "Write a haiku about proxies."
        t = Timer()
        text, types = "", []
        for ev in an.messages.create(model="claude-sonnet-4-5", max_tokens=180, stream=True,
                                     messages=[{"role": "user", "content": q}],
                                     extra_headers={"x-llmwatch-request-id": "msg-stream"}):
            types.append(ev.type)
            if ev.type == "content_block_delta":
                t.content()
                text += ev.delta.text
        t.done()
        u = anthropic_usage(q, 180)
        check(f"{name}: the SDK got every event and the text",  # (the SDK drops pings)
              [["message_start", "content_block_start"], 10, ["content_block_stop",
               "message_delta", "message_stop"], ANSWER],
              [types[:2], types.count("content_block_delta"), types[-3:], text])
        incremental(name, t)
        verify(env, name, "msg-stream", model="claude-sonnet-4-5-20250929", provider="anthropic",
               tokens=rec_anthropic(u), timer=t, stream=True, cost_model="claude-sonnet-4-5")

    # 11. Upstream errors, passed through and recorded.
    name = "openai 429"
    with section(name):
        t = Timer()
        err = None
        try:
            oa.chat.completions.create(model="rate-limited-model",
                                       messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-llmwatch-request-id": "err-429"})
        except openai.RateLimitError as e:
            err = e
        t.done()
        seen = env.seen()
        check(f"{name}: the SDK raised RateLimitError with the upstream's error body",
              [True, "rate_limit_exceeded", "requests"],
              [err is not None, (err.body or {}).get("code") if err else None,
               (err.body or {}).get("type") if err else None])
        if err is not None:
            check(f"{name}: retry-after forwarded", seen.get("response_headers", {})
                  .get("retry-after"), err.response.headers.get("retry-after"))
        verify(env, name, "err-429", model="rate-limited-model", provider="openai",
               tokens=[0, 0, 0, 0, 0], timer=t, stream=False, status="error",
               error_type=openai_error_type(err.body if err else {}), usage_unknown=None)

    name = "openai 429 on a priced model"
    with section(name):
        err = None
        try:
            oa.chat.completions.create(model="gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-llmwatch-request-id": "err-429-priced",
                                                      "x-standin-status": "429"})
        except openai.RateLimitError as e:
            err = e
        rec = env.record("err-429-priced")
        check(f"{name}: the SDK raised RateLimitError", True, err is not None)
        # An error answer bills nothing: 0 tokens at $0, not usage of unknown cost (which the
        # reports list as unpriced and the built-in `unpriced usage` alert warns about).
        check(f"{name}: recorded as status error, 0 tokens, cost $0 (not unpriced usage)",
              ["error", 0, 0, None],
              [rec.get("status"), rec.get("input_tokens") + rec.get("output_tokens"),
               None if rec.get("cost") is None else round(rec["cost"] * 1e9),
               (rec.get("attributes") or {}).get("llmwatch.usage")] if rec else "no record")

    name = "openai 500 (stream requested)"
    with section(name):
        t = Timer()
        err = None
        try:
            for _ in oa.chat.completions.create(model="broken-model", stream=True,
                                                messages=[{"role": "user", "content": "hi"}],
                                                extra_headers={"x-llmwatch-request-id": "err-500"}):
                pass
        except openai.InternalServerError as e:
            err = e
        t.done()
        check(f"{name}: the SDK raised InternalServerError (500, server_error)", [500, "server_error"],
              [err.status_code if err else None, (err.body or {}).get("type") if err else None])
        rec = env.record("err-500")
        check(f"{name}: recorded status error, error_type server_error", ["error", "server_error"],
              [rec.get("status"), rec.get("error_type")] if rec else "no record")

    name = "anthropic 429"
    with section(name):
        t = Timer()
        err = None
        try:
            an.messages.create(model="rate-limited-model", max_tokens=10,
                               messages=[{"role": "user", "content": "hi"}],
                               extra_headers={"x-llmwatch-request-id": "err-a429"})
        except anthropic.RateLimitError as e:
            err = e
        t.done()
        check(f"{name}: the SDK raised RateLimitError with Anthropic's error body",
              ["error", "rate_limit_error"],
              [(err.body or {}).get("type"), (err.body or {}).get("error", {}).get("type")]
              if err else "no RateLimitError")
        verify(env, name, "err-a429", model="rate-limited-model", provider="anthropic",
               tokens=[0, 0, 0, 0, 0], timer=t, stream=False, status="error",
               error_type="rate_limit_error", usage_unknown=None)

    name = "anthropic 529 (stream requested)"
    with section(name):
        err = None
        try:
            for _ in an.messages.create(model="overloaded-model", max_tokens=10, stream=True,
                                        messages=[{"role": "user", "content": "hi"}],
                                        extra_headers={"x-llmwatch-request-id": "err-a529"}):
                pass
        except anthropic.APIStatusError as e:
            err = e
        check(f"{name}: the SDK raised APIStatusError 529", 529, err.status_code if err else None)
        rec = env.record("err-a529")
        check(f"{name}: recorded status error, error_type overloaded_error",
              ["error", "overloaded_error"],
              [rec.get("status"), rec.get("error_type")] if rec else "no record")

    name = "anthropic error event mid-stream"
    with section(name):
        err, types = None, []
        try:
            for ev in an.messages.create(model="stream-error-model", max_tokens=10, stream=True,
                                         messages=[{"role": "user", "content": "hi"}],
                                         extra_headers={"x-llmwatch-request-id": "err-astream"}):
                types.append(ev.type)
        except anthropic.APIStatusError as e:
            err = e
        check(f"{name}: the SDK got message_start, then raised on the error event",
              [["message_start"], "overloaded_error"],
              [types, (err.body or {}).get("error", {}).get("type") if err else None])
        rec = env.record("err-astream")
        check(f"{name}: recorded error_type overloaded_error (HTTP 200 stream)", "overloaded_error",
              rec.get("error_type") if rec else "no record")
        check(f"{name}: recorded status error", "error", rec.get("status") if rec else "no record")

    # 12. A route that is not recorded: passed through (query string, encoding) and not recorded.
    name = "pass-through GET /models"
    with section(name):
        before = len(env.search(limit=500) or [])
        ids = [m.id for m in oa.models.list(extra_query={"probe": "1"})]
        seen = env.seen()
        sent = (wire_o.req or {}).get("headers", {})
        check(f"{name}: the SDK listed the stand-in's models", 4, len(ids))
        check(f"{name}: upstream got /v1/models?probe=1, the key, the SDK's accept-encoding, "
              "no x-llmwatch-*",
              ["GET", "/v1/models", "probe=1", f"Bearer {KEY_OPENAI}", sent.get("accept-encoding"),
               []],
              [seen.get("method"), seen.get("path"), seen.get("query"),
               seen.get("headers", {}).get("authorization"),
               seen.get("headers", {}).get("accept-encoding"),
               sorted(k for k in seen.get("headers", {}) if k.startswith("x-llmwatch"))])
        check(f"{name}: a gzip answer reached the SDK as gzip (content-encoding forwarded)",
              seen.get("response_headers", {}).get("content-encoding"),
              (wire_o.resp or {}).get("headers", {}).get("content-encoding"))
        # A recorded call after it: once that one is stored, anything before it would be too.
        oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                   extra_headers={"x-llmwatch-request-id": "after-models"})
        env.record("after-models")
        check(f"{name}: not recorded (only the call after it was)", before + 1,
              len(env.search(limit=500) or []))

    # 13. Byte-level fidelity with plain httpx: bodies as the stand-in sent them, and stream
    #     bytes arriving as they were sent.
    with httpx2.Client(timeout=30) as hx:
        for name, path, hdrs, body in [
            ("raw chat JSON", "/proxy/openai/v1/chat/completions",
             {"authorization": f"Bearer {KEY_OPENAI}"},
             {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "raw"}]}),
            ("raw chat SSE", "/proxy/openai/v1/chat/completions",
             {"authorization": f"Bearer {KEY_OPENAI}"},
             {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
              "messages": [{"role": "user", "content": "raw"}]}),
            ("raw anthropic SSE (x-api-key)", "/proxy/anthropic/v1/messages",
             {"x-api-key": KEY_ANTHROPIC, "anthropic-version": "2023-06-01"},
             {"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": True,
              "messages": [{"role": "user", "content": "raw"}]}),
        ]:
            with section(name):
                rid = name.replace(" ", "-").replace("(", "").replace(")", "")
                t0 = time.time()
                arrivals, data = [], b""
                with hx.stream("POST", env.url + path, json=body,
                               headers={**hdrs, "x-llmwatch-request-id": rid}) as resp:
                    status = resp.status_code
                    ctype = resp.headers.get("content-type", "")
                    for piece in resp.iter_raw():
                        arrivals.append((time.time() - t0, data.count(b"\n\n")))
                        data += piece
                seen = env.seen()
                check(f"{name}: status, content-type, body sha256 = what the stand-in sent",
                      [200, seen.get("response_headers", {}).get("content-type"),
                       seen.get("response_sha256")],
                      [status, ctype, hashlib.sha256(data).hexdigest()])
                key = next(iter(hdrs))
                check(f"{name}: upstream got {key}", hdrs[key], seen.get("headers", {}).get(key))
                if body.get("stream"):
                    spread = arrivals[-1][0] - arrivals[0][0] if arrivals else 0
                    check(f"{name}: bytes arrived spread over the stream (>= 0.3 s between the "
                          "first and last piece, >= 5 pieces)", [True, True],
                          [spread >= 0.3, len(arrivals) >= 5])
                    if spread < 0.3 or len(arrivals) < 5:
                        note(f"{name}: {len(arrivals)} pieces over {spread:.3f} s")
                check(f"{name}: recorded", True, env.record(rid) is not None)

    # 14. Concurrent streams: not serialized, each recorded with its own usage.
    name = "16 concurrent streams"
    with section(name):
        results = {}

        def one(i):
            try:
                c = openai.OpenAI(base_url=f"{env.url}/proxy/openai/v1", api_key=KEY_OPENAI,
                                  max_retries=0, timeout=30)
                text = ""
                for chunk in c.chat.completions.create(
                        model="gpt-4o-mini", max_tokens=100 + i, stream=True,
                        stream_options={"include_usage": True},
                        messages=[{"role": "user", "content": "c" * i}],
                        extra_headers={"x-llmwatch-request-id": f"conc-{i}",
                                       "x-llmwatch-feature": "concurrent"}):
                    if chunk.choices and chunk.choices[0].delta.content:
                        text += chunk.choices[0].delta.content
                results[i] = text
            except Exception as e:  # noqa: BLE001
                results[i] = f"{type(e).__name__}: {e}"

        t0 = time.time()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        wall = time.time() - t0
        check(f"{name}: every stream got the whole text", [ANSWER] * 16,
              [results.get(i) for i in range(16)])
        check(f"{name}: done in < 3 s (one stream takes ~0.7 s: not serialized)", True, wall < 3)
        got = []
        for i in range(16):
            rec = env.record(f"conc-{i}")
            got.append([rec.get("input_tokens"), rec.get("output_tokens"), rec.get("status")]
                       if rec else None)
        check(f"{name}: each recorded with its own usage, status ok",
              [[2000 + i, 100 + i, "ok"] for i in range(16)], got)


def incremental(name, t):
    """The first content chunk reached the SDK well before the stream ended."""
    first = None if t.first is None else (t.first - t.t0) * 1000
    end = (t.t1 - t.t0) * 1000
    ok = first is not None and end - first >= STANDIN_CONTENT_MS - 150
    check(f"{name}: chunks reached the SDK incrementally (first content >= "
          f"{STANDIN_CONTENT_MS - 150} ms before the end)", True, ok)
    if not ok:
        note(f"{name}: first content at {first} ms, end at {end:.0f} ms")


# ---- budget enforcement ----------------------------------------------------------------------

CAPPED_COST = cost_nanos("gpt-4o-mini", rec_chat(chat_usage("gpt-4o-mini", "hi", 300)))


def budget_mode(env, limit_usd):
    def oa(feature):
        hdrs = {"x-llmwatch-feature": feature} if feature else {}
        return openai.OpenAI(base_url=f"{env.url}/proxy/openai/v1", api_key=KEY_OPENAI,
                             default_headers=hdrs, max_retries=0, timeout=30)

    def an(feature):
        return anthropic.Anthropic(base_url=f"{env.url}/proxy/anthropic", api_key=KEY_ANTHROPIC,
                                   default_headers={"x-llmwatch-feature": feature}, max_retries=0,
                                   timeout=30)

    def chat(client, rid, stream=False):
        kw = dict(model="gpt-4o-mini", max_tokens=300, messages=[{"role": "user", "content": "hi"}],
                  extra_headers={"x-llmwatch-request-id": rid})
        if stream:
            return "".join(c.choices[0].delta.content or "" for c in
                           client.chat.completions.create(stream=True, **kw) if c.choices)
        return client.chat.completions.create(**kw).choices[0].message.content

    capped = oa("capped")
    name = "budget (enforce, feature capped)"
    refused, ok_calls, forwarded_refused, t_exceeded = None, 0, None, None
    with section(name):
        for i in range(40):
            before = env.upstream_count()
            try:
                chat(capped, f"capped-{i}")
                ok_calls += 1
                if ok_calls * CAPPED_COST > limit_usd * 1e9 and t_exceeded is None:
                    t_exceeded = time.time()
            except openai.RateLimitError as e:
                refused = e
                forwarded_refused = env.upstream_count() - before
                break
            if t_exceeded is not None:
                if time.time() - t_exceeded > 5:
                    break
                time.sleep(0.2)
        # 2 calls cost 2 x CAPPED_COST > the limit, and 1 call does not.
        check(f"{name}: the first 2 calls passed (under the limit), then a call was refused",
              [True, True], [ok_calls >= 2, refused is not None])
        note(f"{name}: {ok_calls} calls passed before the first refusal "
             f"(limit ${limit_usd}, ${CAPPED_COST / 1e9:.7f} per call)")
        if refused is not None:
            body = refused.response.json() if refused.response is not None else None
            check(f"{name}: 429, OpenAI error shape {{\"error\": {{message, type}}}} naming the "
                  "budget", [429, ["error"], True, True, True],
                  [refused.status_code, sorted(body) if isinstance(body, dict) else body,
                   isinstance((body or {}).get("error", {}).get("message"), str),
                   isinstance((body or {}).get("error", {}).get("type"), str),
                   "capped-daily" in ((body or {}).get("error", {}).get("message") or "")])
            check(f"{name}: the SDK's RateLimitError message names the budget", True,
                  "capped-daily" in str(refused))
            check(f"{name}: the refused call was not sent upstream", 0, forwarded_refused)
            note(f"{name}: refusal body: {j(body)}")

    name = "budget after exceeded"
    with section(name):
        err = None
        try:
            chat(capped, "capped-stream-after", stream=True)
        except openai.RateLimitError as e:
            err = e
        check(f"{name}: a capped streaming call is refused too", True, err is not None)
        check(f"{name}: another feature passes", ANSWER, chat(oa("uncapped"), "uncapped-1"))
        check(f"{name}: no feature passes", ANSWER, chat(oa(None), "nofeature-1"))
        err, before = None, env.upstream_count()
        try:
            an("capped").messages.create(model="claude-haiku-4-5", max_tokens=50,
                                         messages=[{"role": "user", "content": "hi"}],
                                         extra_headers={"x-llmwatch-request-id": "capped-claude"})
        except anthropic.RateLimitError as e:
            err = e
        forwarded = env.upstream_count() - before
        body = err.response.json() if err is not None else None
        check(f"{name}: anthropic route, feature capped: 429 with Anthropic's error shape naming "
              "the budget, not sent upstream",
              [429, "error", "rate_limit_error", True, 0],
              [err.status_code if err else None, (body or {}).get("type"),
               ((body or {}).get("error") or {}).get("type"),
               "capped-daily" in (((body or {}).get("error") or {}).get("message") or ""),
               forwarded])
        if body is not None:
            note(f"{name}: anthropic refusal body: {j(body)}")
        m = an("other").messages.create(model="claude-haiku-4-5", max_tokens=50,
                                        messages=[{"role": "user", "content": "hi"}],
                                        extra_headers={"x-llmwatch-request-id": "other-claude"})
        check(f"{name}: anthropic route, another feature passes", ANSWER, m.content[0].text)

    name = "budget state"
    with section(name):
        env.record("other-claude")
        _, b = get_json(f"{env.url}/api/v1/budgets")
        by = {x["name"]: x for x in (b or {}).get("budgets", [])}
        capped_b, watch = by.get("capped-daily", {}), by.get("watch-only", {})
        check(f"{name}: capped-daily exceeded; spent = the passed capped calls' cost (nano-USD)",
              ["exceeded", ok_calls * CAPPED_COST],
              [capped_b.get("state"), round((capped_b.get("spent_usd") or 0) * 1e9)])
        check(f"{name}: watch-only (enforce = false) exceeded, and calls still passed", "exceeded",
              watch.get("state"))
        rec = env.record("capped-0")
        check(f"{name}: capture_content off: no input/output stored", [None, None],
              [rec.get("input"), rec.get("output")] if rec else "no record")
        rows = env.search(request_id="capped-stream-after") or []
        note(f"{name}: the refused calls are {'recorded' if rows else 'not recorded'}"
             + (f" ({j(rows[0])})" if rows else ""))


# ---- add_stream_usage, timeouts, connection errors ------------------------------------------

def aux_mode(env):
    wire = Wire()
    oa = openai.OpenAI(base_url=f"{env.url}/proxy/openai/v1", api_key=KEY_OPENAI, max_retries=0,
                       timeout=30, http_client=openai.DefaultHttpxClient(event_hooks=wire.hooks()))

    name = "add_stream_usage (client did not ask)"
    with section(name):
        q = "Usage please."
        t = Timer()
        text, usage_seen, empty_choices = "", False, 0
        for chunk in oa.chat.completions.create(
                model="gpt-4o-mini", max_tokens=123, stream=True,
                messages=[{"role": "user", "content": q}],
                extra_headers={"x-llmwatch-request-id": "aux-added"}):
            if chunk.choices and chunk.choices[0].delta.content:
                t.content()
                text += chunk.choices[0].delta.content
            usage_seen |= chunk.usage is not None
            empty_choices += not chunk.choices
        t.done()
        check(f"{name}: the SDK got the text and no usage chunk (stripped)", [ANSWER, False, 0],
              [text, usage_seen, empty_choices])
        seen = env.seen()
        sent = json.loads((wire.req or {}).get("body") or b"{}")
        got = seen.get("body") or {}
        check(f"{name}: the upstream got stream_options.include_usage = true, the rest unchanged",
              [True, {k: v for k, v in sent.items() if k != "stream_options"}],
              [(got.get("stream_options") or {}).get("include_usage"),
               {k: v for k, v in got.items() if k != "stream_options"}])
        u = chat_usage("gpt-4o-mini", q, 123)
        verify(env, name, "aux-added", model="gpt-4o-mini-2024-07-18", provider="openai",
               tokens=rec_chat(u), timer=t, stream=True, cost_model="gpt-4o-mini",
               labels={}, attrs={})

    name = "add_stream_usage (client asked itself)"
    with section(name):
        usage = None
        for chunk in oa.chat.completions.create(
                model="gpt-4o-mini", max_tokens=77, stream=True,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "mine"}],
                extra_headers={"x-llmwatch-request-id": "aux-own"}):
            if chunk.usage is not None:
                usage = chunk.usage.completion_tokens
        check(f"{name}: the SDK still gets its usage chunk", 77, usage)
        rec = env.record("aux-own")
        check(f"{name}: recorded output tokens", 77, rec.get("output_tokens") if rec else None)

    name = "upstream timeout (timeout = 2s, upstream answers after 5 s)"
    with section(name):
        t = Timer()
        err = None
        try:
            oa.chat.completions.create(model="slow-model",
                                       messages=[{"role": "user", "content": "slow"}],
                                       extra_headers={"x-llmwatch-request-id": "aux-timeout"})
        except openai.APIStatusError as e:
            err = e
        t.done()
        check(f"{name}: the SDK got 504 after ~2 s", [504, True],
              [err.status_code if err else None, 1.8 <= t.ms / 1000 <= 4.5])
        if err is not None:
            note(f"{name}: 504 body: {err.response.text[:300]}")
        rec = env.record("aux-timeout")
        dur = rec.get("duration_ms") if rec else None
        check(f"{name}: recorded status error, error_type timeout, duration ~2 s",
              ["error", "timeout", True],
              [rec.get("status"), rec.get("error_type"), dur is not None and 1800 <= dur <= 4500]
              if rec else "no record")

    name = "upstream connection refused (anthropic)"
    with section(name):
        an = anthropic.Anthropic(base_url=f"{env.url}/proxy/anthropic", api_key=KEY_ANTHROPIC,
                                 max_retries=0, timeout=30)
        err = None
        try:
            an.messages.create(model="claude-haiku-4-5", max_tokens=10,
                               messages=[{"role": "user", "content": "hi"}],
                               extra_headers={"x-llmwatch-request-id": "aux-conn"})
        except anthropic.APIStatusError as e:
            err = e
        check(f"{name}: the SDK got 502", 502, err.status_code if err else None)
        if err is not None:
            note(f"{name}: 502 body: {err.response.text[:300]}")
        rec = env.record("aux-conn")
        check(f"{name}: recorded status error, error_type connection_error, provider anthropic",
              ["error", "connection_error", "anthropic"],
              [rec.get("status"), rec.get("error_type"), rec.get("provider")]
              if rec else "no record")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="llmwatch, e.g. http://127.0.0.1:4318")
    p.add_argument("--upstream", required=True, help="proxy_upstream.py, e.g. http://127.0.0.1:9")
    p.add_argument("--mode", choices=["main", "budget", "aux"], required=True)
    p.add_argument("--limit-usd", type=float, default=0.0005)
    a = p.parse_args()
    env = Env(a.url, a.upstream)
    if a.mode == "main":
        main_mode(env)
    elif a.mode == "budget":
        budget_mode(env, a.limit_usd)
    else:
        aux_mode(env)


if __name__ == "__main__":
    sys.exit(main())
