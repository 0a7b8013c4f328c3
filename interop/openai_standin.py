"""A tiny OpenAI-compatible stand-in for the OTLP interop suite (stdlib only, 127.0.0.1).

POST /v1/chat/completions answers a fixed, documented response whose numbers depend only on the
request, so the client script can recompute them on its own:

  model              RESPONSE_MODELS[request model] (a dated snapshot, as OpenAI answers);
                     an unknown request model gets 404 {"error": {"code": "model_not_found"}}
  prompt_tokens      1000 + 10 * len(text of the last message)
  completion_tokens  max_tokens if the request sets it, else 42
  cached_tokens      (prompt_tokens_details) 768 for gpt-4o, 0 otherwise
  stream=true        server-sent chunks, then (stream_options.include_usage) a usage chunk, [DONE]

Usage: python3 openai_standin.py PORT_FILE   (binds 127.0.0.1:0, writes the port to PORT_FILE)
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESPONSE_MODELS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
}
CACHED = {"gpt-4o": 768}


def usage_for(body):
    text = body["messages"][-1]["content"]
    prompt = 1000 + 10 * len(text)
    completion = body.get("max_tokens") or 42
    cached = CACHED.get(body["model"], 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counter = 0

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
        model = body.get("model")
        if model not in RESPONSE_MODELS:
            return self.send_json(404, {"error": {
                "message": f"The model `{model}` does not exist", "type": "invalid_request_error",
                "param": None, "code": "model_not_found"}})
        Handler.counter += 1
        cid = f"chatcmpl-standin{Handler.counter}"
        created = int(time.time())
        usage = usage_for(body)
        rmodel = RESPONSE_MODELS[model]
        answer = "Hello from the stand-in."
        if not body.get("stream"):
            return self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": rmodel,
                "system_fingerprint": "fp_standin",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": answer, "refusal": None}}],
                "usage": usage,
            })
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()

        def chunk(choices, usage=None):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": rmodel,
                 "system_fingerprint": "fp_standin", "choices": choices}
            if usage is not None or body.get("stream_options", {}).get("include_usage"):
                c["usage"] = usage
            self.wfile.write(b"data: " + json.dumps(c).encode() + b"\n\n")
            self.wfile.flush()

        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for word in answer.split(" "):
            chunk([{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}])
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if body.get("stream_options", {}).get("include_usage"):
            chunk([], usage)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
