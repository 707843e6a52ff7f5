#!/usr/bin/env python3
"""A webhook receiver for Tokenwatch's notification tests: verifies each delivery's Standard Webhooks signature
on its own (Python's hmac, not Tokenwatch's code) and logs it as a JSON line.

    webhook_receiver.py PORT_FILE LOG_FILE SECRET [--fail-first N] [--status CODE] [--tls CERT KEY]

Writes the port it listens on (127.0.0.1) to PORT_FILE. Answers the first N requests with 500 (then 204), or
every request with CODE; --hang-first S holds the first answer S seconds.
"""
import argparse, base64, hashlib, hmac, json, ssl, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = argparse.ArgumentParser()
args.add_argument("port_file"); args.add_argument("log_file"); args.add_argument("secret")
args.add_argument("--fail-first", type=int, default=0); args.add_argument("--status", type=int)
args.add_argument("--tls", nargs=2)
args.add_argument("--hang-first", type=float, default=0)
a = args.parse_args()
lock = threading.Lock()
seen = {"n": 0}


def valid(msg_id, ts, body, header):
    key = base64.b64decode(a.secret[len("whsec_"):])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return any(part == "v1," + expected for part in header.split(" "))


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
            entry = {"n": n, "id": msg_id, "timestamp": ts, "valid": valid(msg_id, ts, body, sig), "status": status,
                     "host": self.headers.get("Host"), "path": self.path, "body": json.loads(body or b"null")}
            with open(a.log_file, "a") as f:
                f.write(json.dumps(entry) + "\n")
        if n == 1 and a.hang_first:
            time.sleep(a.hang_first)  # the sender may be killed meanwhile
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


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
