#!/usr/bin/env python3
"""Sends commands to the local broker's control port (see deploy/mockbroker/mockbroker.c).

Usage: deploy/broker-ctl.py HOST:PORT "CREATE topic 32" ["DOWN 1" ...]
Exits non-zero unless every command is answered OK.
"""
import socket
import sys


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = sys.argv[1].rsplit(":", 1)
    commands = sys.argv[2:]
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall("".join(c + "\n" for c in commands).encode())
        replies = b""
        while replies.count(b"\n") < len(commands):
            chunk = s.recv(4096)
            if not chunk:
                break
            replies += chunk
    answers = replies.decode().splitlines()
    failed = [f"{c}: {a}" for c, a in zip(commands, answers) if a != "OK"]
    if len(answers) < len(commands) or failed:
        print("broker-ctl: " + ("; ".join(failed) or "no answer"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
