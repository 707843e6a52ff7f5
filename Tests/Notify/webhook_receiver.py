#!/usr/bin/env python3
"""A webhook receiver for Tokenwatch's notification tests: verifies each delivery's Standard Webhooks signature
on its own (Python's hmac, not Tokenwatch's code) and logs it as a JSON line.

    webhook_receiver.py PORT_FILE LOG_FILE SECRET [--fail-first N] [--status CODE] [--tls CERT KEY] [--slack]

Writes the port it listens on (127.0.0.1) to PORT_FILE. Answers the first N requests with 500 (then 204), or
every request with CODE; --also-secret S logs "valid_also", the signature checked with a second secret (a
rotation's new one); --hang-first S holds the first answer S seconds, --hang S every answer; --retry-after V
sends `Retry-After: V` with each answer. With --slack it also checks each body
against what Slack's incoming webhooks accept (Block Kit: a fallback text, blocks of known types with their
documented limits) and logs "slack_error" (null when the message is valid), answering 400 to an invalid one as
Slack does.
"""
import argparse, base64, hashlib, hmac, json, ssl, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = argparse.ArgumentParser()
args.add_argument("port_file"); args.add_argument("log_file"); args.add_argument("secret")
args.add_argument("--fail-first", type=int, default=0); args.add_argument("--status", type=int)
args.add_argument("--tls", nargs=2)
args.add_argument("--hang-first", type=float, default=0)
args.add_argument("--hang", type=float, default=0)
args.add_argument("--retry-after")
args.add_argument("--slack", action="store_true")
args.add_argument("--also-secret")
a = args.parse_args()
lock = threading.Lock()
seen = {"n": 0}


def valid(msg_id, ts, body, header, secret=None):
    key = base64.b64decode((secret or a.secret)[len("whsec_"):])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return any(part == "v1," + expected for part in header.split(" "))


def slack_error(message):
    """What Slack would refuse in an incoming-webhook message, or None."""
    if not isinstance(message, dict):
        return "not an object"
    if not isinstance(message.get("text"), str) or not message["text"]:
        return "no fallback text"
    blocks = message.get("blocks")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return "blocks must be a list of 1-50"
    def text_object(t, where, limit):
        if not isinstance(t, dict) or t.get("type") not in ("plain_text", "mrkdwn") or not isinstance(t.get("text"), str) or not t["text"]:
            return f"{where}: not a text object"
        if len(t["text"]) > limit:
            return f"{where}: longer than {limit}"
        return None
    for i, b in enumerate(blocks):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "header":
            if b["text"].get("type") != "plain_text":
                return f"blocks[{i}]: a header is plain_text"
            e = text_object(b.get("text"), f"blocks[{i}].text", 150)
        elif kind == "section":
            if "text" not in b and "fields" not in b:
                return f"blocks[{i}]: a section needs text or fields"
            e = text_object(b["text"], f"blocks[{i}].text", 3000) if "text" in b else None
            fields = b.get("fields", [])
            if not isinstance(fields, list) or len(fields) > 10:
                return f"blocks[{i}].fields: at most 10"
            for j, f in enumerate(fields):
                e = e or text_object(f, f"blocks[{i}].fields[{j}]", 2000)
        elif kind == "context":
            elements = b.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                return f"blocks[{i}].elements: 1-10"
            e = None
            for j, el in enumerate(elements):
                e = e or text_object(el, f"blocks[{i}].elements[{j}]", 3000)
        elif kind == "divider":
            e = None
        else:
            return f"blocks[{i}]: unknown type {kind!r}"
        if e:
            return e
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        msg_id, ts, sig = self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", ""), self.headers.get("webhook-signature", "")
        with lock:
            seen["n"] += 1
            n = seen["n"]
            status = a.status or (500 if n <= a.fail_first else 204)
            parsed = json.loads(body or b"null")
            entry = {"n": n, "received_at": time.time(), "id": msg_id, "timestamp": ts, "valid": valid(msg_id, ts, body, sig), "status": status, "signature": sig,
                     "host": self.headers.get("Host"), "path": self.path, "body": parsed}
            if a.also_secret:
                entry["valid_also"] = valid(msg_id, ts, body, sig, a.also_secret)
            if a.slack:
                entry["slack_error"] = slack_error(parsed)
                if entry["slack_error"]:
                    entry["status"] = status = 400
            with open(a.log_file, "a") as f:
                f.write(json.dumps(entry) + "\n")
        if n == 1 and a.hang_first:
            time.sleep(a.hang_first)  # the sender may be killed meanwhile
        if a.hang:
            time.sleep(a.hang)  # a receiver that never answers within the sender's deadline
        self.send_response(status)
        if a.retry_after is not None:
            self.send_header("Retry-After", a.retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()


# socketserver's listen backlog is 5: twenty concurrent deliveries would wait for SYN retransmits (a second each).
ThreadingHTTPServer.request_queue_size = 256
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if a.tls:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(a.tls[0], a.tls[1])
    server.socket = context.wrap_socket(server.socket, server_side=True)
with open(a.port_file + ".tmp", "w") as f:
    f.write(str(server.server_port))
import os
os.replace(a.port_file + ".tmp", a.port_file)
server.serve_forever()
