#!/usr/bin/env bash
# What the dashboard's browser test needs: Debian's chromium and chromium-driver (apt-installed when missing, as
# root or through sudo) and a Python virtual environment with selenium (deploy/browser/requirements.txt, from PyPI).
# Prints the environment's python. Usage: deploy/browser/setup.sh VENV_DIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "installing chromium and chromium-driver" >&2
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2 \
        || { $SUDO apt-get update -q >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2; }
fi
exec bash "$HERE/../venv.sh" "$1" "$HERE/requirements.txt"
