#!/usr/bin/env python3
"""An instrumented LLM application for Tokenwatch's OTLP tests: the real openai client, instrumented by a real
OpenTelemetry GenAI instrumentation and exported by the real OpenTelemetry SDK, calling a local stub of the OpenAI
API (no real model is ever called).

    llm_client.py fixtures OUT_DIR
        For each instrumentation (OpenLLMetry's opentelemetry-instrumentation-openai and the OpenTelemetry
        project's opentelemetry-instrumentation-openai-v2) and each OTLP/HTTP encoding (protobuf, JSON), run the
        scripted calls once with the exporter pointed at a local capture server and write the exported body
        (OUT_DIR/<instrumentation>.<pb|json>) and what the test should find in it (OUT_DIR/<instrumentation>.<pb|json>.expected.json:
        every span's ids and times as the SDK recorded them, and each call's answer as the stub gave it).

    llm_client.py live --endpoint URL --key KEY [--protocol protobuf|json] [--instrumentation openllmetry|otel]
                       [--export-twice] [--run N] [--out FILE]
        Run the scripted calls exporting live to a Tokenwatch gateway, the way a user would configure it
        (endpoint and `Authorization: Bearer` header). --export-twice sends every export twice, unchanged, as an
        exporter retry would. Prints the expectations as JSON on stdout.

Requirements: deploy/otel/requirements.txt (the Makefile builds the virtual environment).
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The scripted calls. Token counts differ per call so a wrong mapping cannot pass by accident.
CALLS = [
    {"name": "chat", "model": "gpt-4o-mini", "served_model": "gpt-4o-mini-2024-07-18", "input": 120, "output": 45, "cached": 64, "reasoning": 0, "delay": 0.040},
    {"name": "stream", "model": "gpt-4o", "served_model": "gpt-4o-2024-08-06", "input": 300, "output": 80, "cached": 0, "reasoning": 0, "delay": 0.030, "stream": True},
    {"name": "reasoning", "model": "o3-mini", "served_model": "o3-mini-2025-01-31", "input": 50, "output": 500, "cached": 0, "reasoning": 384, "delay": 0.060},
    {"name": "rate_limited", "model": "gpt-4o", "status": 429, "delay": 0.010},
    {"name": "server_error", "model": "gpt-4o-mini", "status": 500, "delay": 0.010},
    {"name": "embedding", "model": "text-embedding-3-small", "served_model": "text-embedding-3-small", "input": 12, "output": 0, "delay": 0.015, "embedding": True},
]


# One model call per instrumentation scope: the Anthropic SDK's own span and OpenLLMetry's, for each of these.
# Anthropic's `input_tokens` leaves out cache reads; "input" here is what the GenAI conventions count (both).
ANTHROPIC_CALLS = [
    {"name": "chat", "model": "claude-3-5-haiku", "served_model": "claude-3-5-haiku-20241022", "input": 130, "cached": 30, "output": 40, "delay": 0.020},
    {"name": "stream", "model": "claude-sonnet-4", "served_model": "claude-sonnet-4-20250514", "input": 210, "cached": 0, "output": 64, "delay": 0.030, "stream": True},
    {"name": "rate_limited", "model": "claude-3-5-haiku", "status": 429, "delay": 0.010},
]

# openlit prices calls from its own price file; gpt-4o is left out of it, as it was of openlit's at the time of
# issue 13, so its spans carry gen_ai.usage.cost = 0 while gpt-4o-mini's carry a real cost.
OPENLIT_CALLS = [
    {"name": "unpriced", "model": "gpt-4o", "served_model": "gpt-4o-2024-08-06", "input": 400, "output": 90, "cached": 0, "reasoning": 0, "delay": 0.020},
    {"name": "priced", "model": "gpt-4o-mini", "served_model": "gpt-4o-mini-2024-07-18", "input": 1000, "output": 200, "cached": 0, "reasoning": 0, "delay": 0.020},
    {"name": "stream", "model": "gpt-4o-mini", "served_model": "gpt-4o-mini-2024-07-18", "input": 300, "output": 80, "cached": 0, "reasoning": 0, "delay": 0.030, "stream": True},
]
OPENLIT_PRICES = {"chat": {"gpt-4o-mini": {"promptPrice": 0.00015, "completionPrice": 0.0006}}, "embeddings": {}, "images": {}, "audio": {}}


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Without this, Nagle's algorithm holds a stream's first small chunk until the client's delayed ACK
        # (~40 ms on loopback): the first chunk would arrive only after the stub's pause, hiding time to first token.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def chunk(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def answer(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class AnthropicStub(StubHandler):
    """Answers /v1/messages the way the Anthropic API does (JSON and server-sent events), from ANTHROPIC_CALLS."""
    calls = {}

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        call = AnthropicStub.calls[body["metadata"]["user_id"]]
        time.sleep(call["delay"])
        headers = {"request-id": "req_" + uuid.uuid4().hex}
        if call.get("status"):
            return self.answer(call["status"], {"type": "error", "error": {"type": "rate_limit_error", "message": "stubbed"}}, headers)
        # A response id the provider never repeats: what lets two instrumentations' spans of this call be matched.
        call["response_id"] = "msg_" + uuid.uuid4().hex
        usage = {"input_tokens": call["input"] - call["cached"], "cache_read_input_tokens": call["cached"], "cache_creation_input_tokens": 0, "output_tokens": call["output"]}
        message = {"id": call["response_id"], "type": "message", "role": "assistant", "model": call["served_model"], "stop_reason": "end_turn", "stop_sequence": None}
        if not body.get("stream"):
            return self.answer(200, dict(message, content=[{"type": "text", "text": "stubbed answer"}], usage=usage), headers)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [
            ("message_start", {"type": "message_start", "message": dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "stubbed "}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "answer"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            # Cumulative, as the API reports it: the call's output tokens are this number, not 1 + this.
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": call["output"]}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        for n, (name, data) in enumerate(events):
            self.chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            if n == 2:  # after the first text: the SDK's time to first chunk is that of the first content delta
                time.sleep(call["delay"])
        self.chunk(b"")


class OpenAIStub(StubHandler):
    """Answers /v1/chat/completions and /v1/embeddings the way the OpenAI API does, from CALLS by model name."""
    calls = {}

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        call = OpenAIStub.calls[body.get("user") or body["model"]]
        time.sleep(call["delay"])
        status = call.get("status", 200)
        if status != 200:
            kind = {429: ("rate_limit_exceeded", "requests"), 500: ("server_error", "server_error")}[status]
            return self.answer(status, {"error": {"message": f"stubbed {status}", "type": kind[1], "code": kind[0]}})
        usage = {"prompt_tokens": call["input"], "completion_tokens": call["output"], "total_tokens": call["input"] + call["output"],
                 "prompt_tokens_details": {"cached_tokens": call.get("cached", 0)}, "completion_tokens_details": {"reasoning_tokens": call.get("reasoning", 0)}}
        if self.path.endswith("/embeddings"):
            return self.answer(200, {"object": "list", "model": call["served_model"], "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
                                     "usage": {"prompt_tokens": call["input"], "total_tokens": call["input"]}})
        # Unique per answer, as OpenAI's are: two runs of the scripted calls are different calls.
        call["response_id"] = "chatcmpl-" + uuid.uuid4().hex
        if not body.get("stream"):
            return self.answer(200, {"id": call["response_id"], "object": "chat.completion", "created": int(time.time()), "model": call["served_model"],
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "stubbed answer"}, "finish_reason": "stop"}], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": call["response_id"], "object": "chat.completion.chunk", "created": int(time.time()), "model": call["served_model"]}
        chunks = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": word}, "finish_reason": None}]) for word in ("stubbed ", "streamed ", "answer")]
        chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        chunks.append(dict(base, choices=[], usage=usage))
        for n, chunk in enumerate(chunks):
            self.chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            if n == 0:
                time.sleep(call["delay"])
        self.chunk(b"data: [DONE]\n\n")
        self.chunk(b"")


class Capture(BaseHTTPRequestHandler):
    """A stand-in OTLP receiver for `fixtures`: keeps each body exactly as the exporter sent it."""
    protocol_version = "HTTP/1.1"
    bodies = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.endswith("/v1/traces"):
            Capture.bodies.append((self.headers.get("Content-Type"), self.headers.get("Content-Encoding"), body))
        self.send_response(200)
        self.send_header("Content-Type", self.headers.get("Content-Type"))
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_calls(instrumentation, protocol, endpoint, headers, export_twice, run_id):
    """Sets up the SDK as an application would, makes the scripted calls, flushes, and returns the expectations."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    if protocol == "protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create({"service.name": "support-bot", "deployment.environment.name": "staging", "service.version": "1.4.2"})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers)
    if export_twice:
        real_export = exporter.export
        def twice(spans):
            first = real_export(spans)
            real_export(spans)
            return first
        exporter.export = twice
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512, schedule_delay_millis=60_000))
    recorded = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("support-bot")

    if instrumentation == "anthropic":
        calls = anthropic_calls(provider, run_id)
    else:
        calls = openai_calls(instrumentation, provider, tracer, run_id)
    provider.force_flush()
    provider.shutdown()

    spans = []
    for span in recorded.get_finished_spans():
        spans.append({
            "name": span.name, "trace_id": format(span.context.trace_id, "032x"), "span_id": format(span.context.span_id, "016x"),
            "start_unix_nano": span.start_time, "end_unix_nano": span.end_time, "status": span.status.status_code.name,
            "llm": span.name != "handle-request", "scope": span.instrumentation_scope.name if span.instrumentation_scope else "",
        })
    return {"instrumentation": instrumentation, "protocol": protocol, "service": "support-bot", "environment": "staging",
            "calls": calls, "spans": spans}


def anthropic_calls(provider, run_id):
    """The Anthropic SDK (2.x), which makes its own GenAI span for every call, with OpenLLMetry's anthropic
    instrumentation beside it, as an application that adopted both has them: two root spans per call."""
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
    AnthropicInstrumentor().instrument(tracer_provider=provider)
    import anthropic
    stub = serve(AnthropicStub)
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{stub.server_port}", api_key="sk-ant-stub", max_retries=0)
    calls = []
    for call in [dict(c) for c in ANTHROPIC_CALLS]:
        key = f"{call['name']}-{run_id}"
        AnthropicStub.calls[key] = call
        # No application span around the call: each instrumentation's span is then the root of a trace of its own.
        try:
            args = dict(model=call["model"], max_tokens=256, messages=[{"role": "user", "content": "hi"}], metadata={"user_id": key})
            if call.get("stream"):
                with client.messages.stream(**args) as stream:
                    for _ in stream.text_stream:
                        pass
            else:
                client.messages.create(**args)
        except anthropic.APIStatusError:
            pass
        calls.append(call)
    stub.shutdown()
    return calls


def openai_calls(instrumentation, provider, tracer, run_id):
    if instrumentation == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        scripted = CALLS
    elif instrumentation == "otel":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        scripted = CALLS
    else:
        # openlit finds the tracer provider already set and adds its instrumentations to it.
        import tempfile
        import openlit
        prices = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(OPENLIT_PRICES, prices)
        prices.close()
        openlit.init(application_name="support-bot", environment="staging", pricing_json=prices.name, disable_metrics=True, disable_events=True,
                     disabled_instrumentors=["anthropic", "requests", "httpx", "urllib3"])
        scripted = OPENLIT_CALLS

    import openai
    stub = serve(OpenAIStub)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{stub.server_port}/v1", api_key="sk-stub", max_retries=0)
    calls = []
    for call in [dict(c) for c in scripted]:
        # A run id in the stub key (the `user` field) lets one stub serve several runs; the model name stays the same.
        key = f"{call['name']}-{run_id}"
        OpenAIStub.calls[key] = call
        OpenAIStub.calls[call["model"]] = call
        with tracer.start_as_current_span("handle-request"):  # the application's own span: not an LLM call
            try:
                if call.get("embedding"):
                    client.embeddings.create(model=call["model"], input="hello", user=key)
                elif call.get("stream"):
                    for _ in client.chat.completions.create(model=call["model"], messages=[{"role": "user", "content": "hi"}], stream=True,
                                                            stream_options={"include_usage": True}, user=key):
                        pass
                else:
                    client.chat.completions.create(model=call["model"], messages=[{"role": "user", "content": "hi"}], user=key)
            except openai.APIStatusError:
                pass
        calls.append(call)
    stub.shutdown()
    return calls


def fixtures(out_dir, legacy_python, anthropic_python, openlit_python):
    os.makedirs(out_dir, exist_ok=True)
    runs = [(sys.executable, instrumentation, protocol, instrumentation) for instrumentation in ("openllmetry", "otel") for protocol in ("protobuf", "json")]
    if legacy_python:
        # An OpenLLMetry release from before the GenAI attribute renames (gen_ai.system, gen_ai.usage.prompt_tokens,
        # llm.usage.total_tokens), which many deployed applications still run. Its SDK has no JSON exporter.
        runs.append((legacy_python, "openllmetry", "protobuf", "openllmetry-legacy"))
    if anthropic_python:
        runs.append((anthropic_python, "anthropic", "protobuf", "anthropic-sdk+openllmetry"))
    if openlit_python:
        runs.append((openlit_python, "openlit", "protobuf", "openlit"))
    for python, instrumentation, protocol, label in runs:
        # One process per run: the SDK's tracer provider and an instrumentation are process-wide.
        subprocess.run([python, __file__, "_capture", out_dir, instrumentation, protocol, label], check=True)


def capture(out_dir, instrumentation, protocol, label):
    receiver = serve(Capture)
    expected = run_calls(instrumentation, protocol, f"http://127.0.0.1:{receiver.server_port}/v1/traces", {}, False, "fixture")
    receiver.shutdown()
    assert len(Capture.bodies) == 1, f"expected one export, got {len(Capture.bodies)}"
    content_type, encoding, body = Capture.bodies[0]
    assert encoding in (None, "identity"), encoding
    name = f"{label}.{'pb' if protocol == 'protobuf' else 'json'}"
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(body)
    expected["content_type"] = content_type
    expected["label"] = label
    with open(os.path.join(out_dir, name + ".expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("out_dir")
    f.add_argument("--legacy-python", help="a Python with deploy/otel/requirements-legacy.txt installed")
    f.add_argument("--anthropic-python", help="a Python with deploy/otel/requirements-anthropic.txt installed")
    f.add_argument("--openlit-python", help="a Python with deploy/otel/requirements-openlit.txt installed")
    c = sub.add_parser("_capture")
    c.add_argument("out_dir")
    c.add_argument("instrumentation")
    c.add_argument("protocol")
    c.add_argument("label")
    live = sub.add_parser("live")
    live.add_argument("--endpoint", required=True, help="the gateway's base URL; /v1/traces is appended")
    live.add_argument("--key", required=True)
    live.add_argument("--protocol", choices=("protobuf", "json"), default="protobuf")
    live.add_argument("--instrumentation", choices=("openllmetry", "otel"), default="openllmetry")
    live.add_argument("--export-twice", action="store_true")
    live.add_argument("--run", default="live")
    live.add_argument("--out", help="write the expectations here instead of stdout")
    args = parser.parse_args()
    if args.command == "fixtures":
        fixtures(args.out_dir, args.legacy_python, args.anthropic_python, args.openlit_python)
    elif args.command == "_capture":
        capture(args.out_dir, args.instrumentation, args.protocol, args.label)
    else:
        expected = run_calls(args.instrumentation, args.protocol, args.endpoint.rstrip("/") + "/v1/traces",
                             {"Authorization": f"Bearer {args.key}"}, args.export_twice, args.run)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(expected, f)
        else:
            json.dump(expected, sys.stdout)


if __name__ == "__main__":
    main()
