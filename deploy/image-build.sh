#!/usr/bin/env bash
# Builds one service's image reproducibly: base images by digest from deploy/base-images.lock (a tag-only entry is
# resolved once and written back), Swift dependencies at the exact versions of deploy/dependencies.resolved (the
# Dockerfile resolves with --force-resolved-versions).
# Usage: deploy/image-build.sh ENGINE SERVICE TAG [--relock]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENGINE=$1 SERVICE=$2 TAG=$3 RELOCK=${4:-}
LOCK="$ROOT/deploy/base-images.lock"
digest_of() { # image[:tag] -> repository@sha256:...
    local image=${1%@*} digest
    if "$ENGINE" buildx version >/dev/null 2>&1; then
        digest=$("$ENGINE" buildx imagetools inspect "$image" --format '{{json .Manifest.Digest}}' | tr -d '"')
    else
        digest=$(skopeo inspect --format '{{.Digest}}' "docker://$image")
    fi
    [[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "image-build: could not resolve $image to a digest (got '$digest')" >&2; exit 1; }
    echo "$image@$digest"
}
args=()
while IFS='=' read -r name value; do
    [[ -z $name || $name == \#* ]] && continue
    if [[ $value != *@sha256:* || $RELOCK == --relock ]]; then
        pinned=$(digest_of "$value")
        # The tag stays beside the digest (name:tag@sha256:...): the engine pulls by digest, people read the tag.
        sed -i "s|^$name=.*|$name=$pinned|" "$LOCK"
        echo "image-build: $name ${value%@*} is $pinned (written to deploy/base-images.lock: commit it)"
        value=$pinned
    fi
    args+=(--build-arg "$name=$value")
done <"$LOCK"
[ "$RELOCK" = --relock ] && [ "$SERVICE" = - ] && exit 0
"$ENGINE" build -f "$ROOT/deploy/Dockerfile" "${args[@]}" --build-arg "SERVICE=$SERVICE" -t "tokenwatch/$SERVICE:$TAG" "$ROOT"
