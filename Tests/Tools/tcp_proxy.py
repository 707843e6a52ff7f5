#!/usr/bin/env python3
"""A TCP proxy the readiness test can cut: forwards 127.0.0.1:<listen> to <target>; SIGUSR1 closes the listener
and every open connection (the dependency becomes unreachable), SIGUSR2 listens again on the same port.
Writes its port to --port-file once listening. Usage: tcp_proxy.py --target HOST:PORT --port-file FILE"""
import argparse, selectors, signal, socket

parser = argparse.ArgumentParser()
parser.add_argument("--target", required=True)
parser.add_argument("--port-file", required=True)
args = parser.parse_args()
host, port = args.target.rsplit(":", 1)
sel = selectors.DefaultSelector()
pairs = {}
listener = None
listen_port = 0
wanted = {"up": True}


def listen():
    global listener, listen_port
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", listen_port))
    listen_port = listener.getsockname()[1]
    listener.listen(64)
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ)


def cut():
    global listener
    if listener is not None:
        sel.unregister(listener)
        listener.close()
        listener = None
    for s in list(pairs):
        close(s)


def close(s):
    other = pairs.pop(s, None)
    for x in (s, other):
        if x is None:
            continue
        pairs.pop(x, None)
        try:
            sel.unregister(x)
        except (KeyError, ValueError):
            pass
        x.close()


signal.signal(signal.SIGUSR1, lambda *_: wanted.update(up=False))
signal.signal(signal.SIGUSR2, lambda *_: wanted.update(up=True))
listen()
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(listen_port))
import os
os.rename(args.port_file + ".tmp", args.port_file)
while True:
    if not wanted["up"] and listener is not None:
        cut()
    elif wanted["up"] and listener is None:
        listen()
    for key, _ in sel.select(timeout=0.05):
        s = key.fileobj
        if s is listener:
            client, _ = listener.accept()
            try:
                upstream = socket.create_connection((host, int(port)), timeout=2)
            except OSError:
                client.close()
                continue
            for x in (client, upstream):
                x.setblocking(False)
                sel.register(x, selectors.EVENT_READ)
            pairs[client], pairs[upstream] = upstream, client
        elif s in pairs:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                close(s)
                continue
            try:
                pairs[s].setblocking(True)
                pairs[s].sendall(data)
                pairs[s].setblocking(False)
            except OSError:
                close(s)
