#!/usr/bin/env bash
# Creates (once, again when the requirements change) a Python virtual environment from a pinned requirements file
# (PyPI): deploy/otel/requirements.txt (the OpenTelemetry SDK, GenAI instrumentations and the openai client, for
# the OTLP tests) by default, deploy/browser/requirements.txt (selenium) for the dashboard's browser test.
# Prints the environment's python. Usage: deploy/venv.sh DIR [requirements file]
set -euo pipefail
DIR=$1
REQ=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/otel/requirements.txt}
STAMP="$DIR/.requirements"
if [ ! -x "$DIR/bin/python" ] || ! cmp -s "$REQ" "$STAMP"; then
    rm -rf "$DIR"
    python3 -m venv "$DIR" >&2
    "$DIR/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2
    cp "$REQ" "$STAMP"
fi
echo "$DIR/bin/python"
