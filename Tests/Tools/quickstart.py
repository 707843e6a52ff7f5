#!/usr/bin/env python3
"""Runs the README's quickstart as written: the ```sh blocks between <!-- quickstart --> and <!-- /quickstart -->,
in order, in one bash session (so exported variables carry over), from the project root, under `set -euo pipefail`.
Prints what each block printed; exits non-zero when a command fails or the whole run passes --timeout seconds."""
import argparse, os, re, subprocess, sys

parser = argparse.ArgumentParser()
parser.add_argument("readme")
parser.add_argument("--timeout", type=int, default=900)
args = parser.parse_args()

text = open(args.readme, encoding="utf-8").read()
section = re.search(r"<!-- quickstart -->(.*?)<!-- /quickstart -->", text, re.S)
if not section:
    sys.exit("no quickstart section in " + args.readme)
blocks = re.findall(r"```sh\n(.*?)```", section.group(1), re.S)
if not blocks:
    sys.exit("the quickstart section holds no sh block")
script = "set -euo pipefail\n"
for n, block in enumerate(blocks, 1):
    script += f"echo '=== quickstart block {n}'\n" + block + "\necho\n"
root = os.path.dirname(os.path.abspath(args.readme))
try:
    result = subprocess.run(["bash", "-c", script], cwd=root, timeout=args.timeout)
except subprocess.TimeoutExpired:
    sys.exit(f"the quickstart did not finish within {args.timeout} s")
sys.exit(result.returncode)
