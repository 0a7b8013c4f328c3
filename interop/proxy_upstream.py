"""A local upstream stand-in for the proxy interop suite (stdlib only, 127.0.0.1).

It speaks the OpenAI and Anthropic wire formats as the real services do, so the official SDKs
accept what llmwatch's proxy forwards:

  POST /v1/chat/completions   JSON, or SSE chunks (`data: {...}` then `data: [DONE]`); the final
                              `choices: []` usage chunk only with stream_options.include_usage
                              (and then every other chunk carries "usage": null, as OpenAI does)
  POST /v1/responses          JSON, or typed SSE events (`event: response.created` ...
                              `response.output_text.delta` ... `response.completed`)
  POST /v1/embeddings         JSON (`encoding_format: "base64"`, the openai SDK's default, gets
                              little-endian float32 base64 as OpenAI sends it)
  POST /v1/messages           Anthropic JSON, or SSE (message_start, content_block_start, ping,
                              content_block_delta..., content_block_stop, message_delta,
                              message_stop)
  GET  /v1/models             a model list (a route the proxy passes through unrecorded)
  GET  /_seen                 the last request received (method, path, query, headers with
                              lower-case names, body and its sha256) and what was answered
                              (response_status, response_headers, response_sha256 of the
                              uncompressed body once it is all sent), for checking what the
                              proxy forwarded
  GET  /_count                how many API requests were received

The numbers depend only on the request (client scripts recompute them on their own):

  chat       prompt_tokens = 2000 + len(text of the last message); cached_tokens 1536;
             completion_tokens = max_completion_tokens or max_tokens or 300;
             reasoning_tokens = completion_tokens // 4 for o-series models, else 0
  responses  input_tokens = 1500 + len(input) (a string); cached_tokens 1024;
             output_tokens = max_output_tokens or 200; reasoning_tokens as for chat
  embeddings prompt_tokens = number of words + number of inputs
  messages   input_tokens = 40 + len(text of the last message) (the uncached part, as Anthropic
             counts); cache_read_input_tokens 4096; cache_creation_input_tokens 512;
             output_tokens = min(max_tokens, 250). Streams: message_start says output_tokens 1,
             message_delta the final count (claude-haiku-* models: message_delta carries only
             output_tokens, the older shape; others also repeat the input counts, as the API
             does now)

Model names: the response names a dated snapshot (RESPONSE_MODELS), as the services do; other
models are echoed. Special request models:

  rate-limited-model   429 with the provider's error body (and retry-after)
  broken-model         500 with the provider's error body
  overloaded-model     529 overloaded_error (Anthropic)
  slow-model           answers after 5 s (for the proxy's upstream timeout)
  stream-error-model   Anthropic stream: message_start, then an `error` event (overloaded_error)

A request header `x-standin-status: 429` (or `500`) gets that error for any model.

Streams are sent chunk by chunk (HTTP/1.1 chunked transfer encoding): the preamble events at
once, then a 200 ms pause before the first content, then one content chunk every 50 ms. The
usage-bearing event (OpenAI's usage chunk, Responses' response.completed, Anthropic's
message_delta) is split across two writes 20 ms apart, as TCP may deliver it; a chat stream's
body ends 30 ms after `data: [DONE]` (the openai SDK stops reading and closes the connection at
[DONE], so a proxy sees the client leave before the upstream's body ends). JSON answers are
gzip-compressed when the request's accept-encoding allows it (as the real services do).

Usage: python3 proxy_upstream.py PORT_FILE   (binds 127.0.0.1:0, writes the port to PORT_FILE)
"""

import base64
import gzip
import hashlib
import itertools
import json
import os
import secrets
import string
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

RESPONSE_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "o4-mini": "o4-mini-2025-04-16",
    "text-embedding-3-small": "text-embedding-3-small",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}
ANSWER = "The quick brown fox jumps over the lazy dog again."
FIRST_CONTENT_DELAY = 0.2
CHUNK_DELAY = 0.05
SPLIT_DELAY = 0.02
DONE_DELAY = 0.03

LOCK = threading.Lock()
SEEN = {"last": None, "count": 0}
COUNTER = itertools.count(1)
ALNUM = string.ascii_letters + string.digits


def rand(n, alphabet=ALNUM):
    return "".join(secrets.choice(alphabet) for _ in range(n))


def is_reasoning(model):
    return len(model) > 1 and model[0] == "o" and model[1].isdigit()


def message_text(message):
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def chat_usage(body):
    prompt = 2000 + len(message_text(body["messages"][-1]))
    completion = body.get("max_completion_tokens") or body.get("max_tokens") or 300
    reasoning = completion // 4 if is_reasoning(body["model"]) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def responses_usage(body):
    inp = 1500 + len(body["input"] if isinstance(body["input"], str) else json.dumps(body["input"]))
    out = body.get("max_output_tokens") or 200
    reasoning = out // 4 if is_reasoning(body["model"]) else 0
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def anthropic_usage(body):
    return {
        "input_tokens": 40 + len(message_text(body["messages"][-1])),
        "cache_creation_input_tokens": 512,
        "cache_read_input_tokens": 4096,
        "cache_creation": {"ephemeral_5m_input_tokens": 512, "ephemeral_1h_input_tokens": 0},
        "output_tokens": min(body.get("max_tokens", 1024), 250),
        "service_tier": "standard",
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin/1.0"
    sys_version = ""

    def log_message(self, *args):
        pass

    # ---- plumbing ---------------------------------------------------------------------------

    def remember(self, body):
        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        url = urlsplit(self.path)
        self.entry = {"method": self.command, "path": url.path, "query": url.query,
                      "headers": headers, "body": parsed,
                      "body_sha256": hashlib.sha256(body).hexdigest()}
        self.sent = hashlib.sha256()
        with LOCK:
            SEEN["count"] += 1
            SEEN["last"] = self.entry

    def sent_headers(self, status, headers):
        self.entry["response_status"] = status
        self.entry["response_headers"] = {k.lower(): v for k, v in headers.items()}

    def sent_all(self):
        """The response is complete: its (uncompressed) body's digest, for /_seen."""
        self.entry["response_sha256"] = self.sent.hexdigest()

    def provider_headers(self, anthropic):
        if anthropic:
            return {"request-id": "req_011C" + rand(20), "anthropic-organization-id": "org-standin",
                    "x-standin": "anthropic"}
        return {"x-request-id": "req_" + secrets.token_hex(16), "openai-processing-ms": "42",
                "openai-version": "2020-10-01", "x-ratelimit-remaining-requests": "9999",
                "x-standin": "openai"}

    def send_json(self, code, obj, anthropic=False, extra=None):
        data = json.dumps(obj).encode()
        if hasattr(self, "entry"):
            self.sent.update(data)
        gz = "gzip" in self.headers.get("accept-encoding", "")
        if gz:
            data = gzip.compress(data)
        headers = {"content-type": "application/json", "content-length": str(len(data))}
        if gz:
            headers["content-encoding"] = "gzip"
        headers.update({**self.provider_headers(anthropic), **(extra or {})})
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if hasattr(self, "entry"):
            self.sent_headers(code, headers)
            self.sent_all()
        self.wfile.write(data)
        self.wfile.flush()

    def start_stream(self, anthropic):
        headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
                   "transfer-encoding": "chunked", **self.provider_headers(anthropic)}
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        self.sent_headers(200, headers)

    def chunk(self, data):
        self.sent.update(data)
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def sse(self, data, event=None, split=False):
        raw = (f"event: {event}\n" if event else "").encode() + b"data: " + data.encode() + b"\n\n"
        if split:  # one event in two TCP writes
            half = len(raw) // 2
            self.chunk(raw[:half])
            time.sleep(SPLIT_DELAY)
            self.chunk(raw[half:])
        else:
            self.chunk(raw)

    def end_stream(self):
        self.sent_all()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def openai_error(self, code, model):
        if code == 429:
            err = {"message": f"Rate limit reached for {model} in organization org-standin on "
                              "requests per min (RPM): Limit 3, Used 3, Requested 1.",
                   "type": "requests", "param": None, "code": "rate_limit_exceeded"}
            return self.send_json(429, {"error": err}, extra={"retry-after": "20"})
        err = {"message": "The server had an error while processing your request. Sorry about that!",
               "type": "server_error", "param": None, "code": None}
        return self.send_json(500, {"error": err})

    def anthropic_error(self, code):
        etype, msg = {429: ("rate_limit_error", "Number of request tokens has exceeded your "
                                                "per-minute rate limit"),
                      500: ("api_error", "Internal server error"),
                      529: ("overloaded_error", "Overloaded")}[code]
        extra = {"retry-after": "15"} if code == 429 else None
        return self.send_json(code, {"type": "error", "error": {"type": etype, "message": msg},
                                     "request_id": "req_011C" + rand(20)},
                              anthropic=True, extra=extra)

    # ---- routes -----------------------------------------------------------------------------

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/_seen":
            with LOCK:
                return self.send_json(200, SEEN["last"])
        if path == "/_count":
            with LOCK:
                return self.send_json(200, {"count": SEEN["count"]})
        self.remember(b"")
        if path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1721172741, "owned_by": "system"}
                for m in RESPONSE_MODELS if not m.startswith("claude")]})
        self.send_json(404, {"error": {"message": f"Unknown path {path}",
                                       "type": "invalid_request_error", "param": None, "code": None}})

    def do_POST(self):
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            raw = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                raw += self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    break
        else:
            n = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(n) if n else b""
        self.remember(raw)
        path = urlsplit(self.path).path
        try:
            body = json.loads(raw)
        except ValueError:
            return self.send_json(400, {"error": {"message": "We could not parse the JSON body",
                                                  "type": "invalid_request_error", "param": None,
                                                  "code": None}})
        model = body.get("model", "")
        anthropic = path == "/v1/messages"
        if model == "slow-model":
            time.sleep(5)
        forced = self.headers.get("x-standin-status")
        if model == "rate-limited-model" or forced == "429":
            return self.anthropic_error(429) if anthropic else self.openai_error(429, model)
        if model == "broken-model" or forced == "500":
            return self.anthropic_error(500) if anthropic else self.openai_error(500, model)
        if model == "overloaded-model" and anthropic:
            return self.anthropic_error(529)
        rmodel = RESPONSE_MODELS.get(model, model)
        if path == "/v1/chat/completions":
            return self.api_chat(body, rmodel)
        if path == "/v1/responses":
            return self.api_responses(body, rmodel)
        if path == "/v1/embeddings":
            return self.api_embeddings(body, rmodel)
        if anthropic:
            return self.api_messages(body, rmodel)
        self.send_json(404, {"error": {"message": f"Unknown path {path}",
                                       "type": "invalid_request_error", "param": None, "code": None}})

    def api_chat(self, body, rmodel):
        cid = "chatcmpl-" + rand(29)
        created = int(time.time())
        usage = chat_usage(body)
        fp = "fp_" + secrets.token_hex(5)
        if not body.get("stream"):
            return self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": rmodel,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": ANSWER, "refusal": None,
                                         "annotations": []}}],
                "usage": usage, "service_tier": "default", "system_fingerprint": fp})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.start_stream(False)

        def send(choices, usage_value=None, split=False):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": rmodel,
                 "service_tier": "default", "system_fingerprint": fp, "choices": choices}
            if include_usage:
                c["usage"] = usage_value
            self.sse(json.dumps(c), split=split)

        send([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
               "logprobs": None, "finish_reason": None}])
        time.sleep(FIRST_CONTENT_DELAY)
        words = ANSWER.split(" ")
        for i, word in enumerate(words):
            if i:
                time.sleep(CHUNK_DELAY)
            send([{"index": 0, "delta": {"content": (" " if i else "") + word},
                   "logprobs": None, "finish_reason": None}])
        send([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        if include_usage:
            send([], usage, split=True)
        self.sse("[DONE]")
        time.sleep(DONE_DELAY)  # the end of the body comes a moment after [DONE]
        self.end_stream()

    def api_responses(self, body, rmodel):
        rid = "resp_" + secrets.token_hex(24)
        mid = "msg_" + secrets.token_hex(24)
        created = int(time.time())
        usage = responses_usage(body)

        def response(status, output, usage_value):
            return {"id": rid, "object": "response", "created_at": created, "status": status,
                    "background": False, "error": None, "incomplete_details": None,
                    "instructions": body.get("instructions"),
                    "max_output_tokens": body.get("max_output_tokens"), "model": rmodel,
                    "output": output, "parallel_tool_calls": True, "previous_response_id": None,
                    "reasoning": {"effort": "medium" if is_reasoning(rmodel) else None,
                                  "summary": None},
                    "service_tier": "default", "store": True, "temperature": 1.0,
                    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
                    "top_p": 1.0, "truncation": "disabled", "usage": usage_value, "user": None,
                    "metadata": {}}

        def message(text, status):
            return {"type": "message", "id": mid, "status": status, "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": [],
                                 "logprobs": []}] if text is not None else []}

        if not body.get("stream"):
            return self.send_json(200, response("completed", [message(ANSWER, "completed")], usage))
        self.start_stream(False)
        seq = itertools.count(0)

        def event(obj, split=False):
            obj["sequence_number"] = next(seq)
            self.sse(json.dumps(obj), event=obj["type"], split=split)

        event({"type": "response.created", "response": response("in_progress", [], None)})
        event({"type": "response.in_progress", "response": response("in_progress", [], None)})
        event({"type": "response.output_item.added", "output_index": 0,
               "item": message(None, "in_progress")})
        event({"type": "response.content_part.added", "item_id": mid, "output_index": 0,
               "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})
        time.sleep(FIRST_CONTENT_DELAY)
        for i, word in enumerate(ANSWER.split(" ")):
            if i:
                time.sleep(CHUNK_DELAY)
            event({"type": "response.output_text.delta", "item_id": mid, "output_index": 0,
                   "content_index": 0, "delta": (" " if i else "") + word, "logprobs": []})
        event({"type": "response.output_text.done", "item_id": mid, "output_index": 0,
               "content_index": 0, "text": ANSWER, "logprobs": []})
        event({"type": "response.content_part.done", "item_id": mid, "output_index": 0,
               "content_index": 0,
               "part": {"type": "output_text", "text": ANSWER, "annotations": []}})
        event({"type": "response.output_item.done", "output_index": 0,
               "item": message(ANSWER, "completed")})
        event({"type": "response.completed",
               "response": response("completed", [message(ANSWER, "completed")], usage)},
              split=True)
        self.end_stream()

    def api_embeddings(self, body, rmodel):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(len(s.split()) for s in inputs) + len(inputs)
        data = []
        for i, s in enumerate(inputs):
            vec = [((len(s) * 7 + j * 13) % 97) / 97.0 - 0.5 for j in range(8)]
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        self.send_json(200, {"object": "list", "data": data, "model": rmodel,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def api_messages(self, body, rmodel):
        mid = "msg_01" + rand(22)
        usage = anthropic_usage(body)
        if not body.get("stream"):
            return self.send_json(200, {
                "id": mid, "type": "message", "role": "assistant", "model": rmodel,
                "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": usage}, anthropic=True)
        self.start_stream(True)

        def event(obj, split=False):
            self.sse(json.dumps(obj), event=obj["type"], split=split)

        start_usage = {**usage, "output_tokens": 1}
        event({"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": rmodel, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})
        if body.get("model") == "stream-error-model":
            time.sleep(CHUNK_DELAY)
            event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            return self.end_stream()
        event({"type": "content_block_start", "index": 0,
               "content_block": {"type": "text", "text": ""}})
        event({"type": "ping"})
        time.sleep(FIRST_CONTENT_DELAY)
        for i, word in enumerate(ANSWER.split(" ")):
            if i:
                time.sleep(CHUNK_DELAY)
            event({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": (" " if i else "") + word}})
        event({"type": "content_block_stop", "index": 0})
        if rmodel.startswith("claude-haiku"):
            delta_usage = {"output_tokens": usage["output_tokens"]}
        else:
            delta_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                                 "cache_read_input_tokens", "output_tokens")}
        event({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
               "usage": delta_usage}, split=True)
        event({"type": "message_stop"})
        self.end_stream()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up: expected
            super().handle_error(request, client_address)


def main():
    server = Server(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
