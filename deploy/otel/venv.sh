#!/usr/bin/env bash
# Creates (once) the Python virtual environment with the OpenTelemetry SDK, the GenAI instrumentations and the
# openai client pinned in deploy/otel/requirements.txt, for the OTLP end-to-end test and the fixture generator.
# Prints the environment's python. Usage: deploy/otel/venv.sh DIR [requirements file]
set -euo pipefail
DIR=$1
REQ=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements.txt}
STAMP="$DIR/.requirements"
if [ ! -x "$DIR/bin/python" ] || ! cmp -s "$REQ" "$STAMP"; then
    rm -rf "$DIR"
    python3 -m venv "$DIR" >&2
    "$DIR/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2
    cp "$REQ" "$STAMP"
fi
echo "$DIR/bin/python"
