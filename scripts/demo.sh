#!/usr/bin/env bash
# capsa's demo: installs what capsa needs, builds capsa (release), makes two images itself (no
# network needed) and runs a container of each with the `capsa` engine, printing what the
# container sees of itself:
#   - a native image: a busybox-static rootfs, imported as an image (`capsa import`);
#   - a wasm image: a WASI module built here with clang-14, packaged as a CNCF wasm OCI artifact
#     (an OCI layout) and loaded (`capsa load`), which compiles it ahead of time; it runs under
#     capsa-shim in the same envelope (namespaces, cgroup, overlay rootfs).
# Runs as root.
#
# Everything it makes lives in one temporary directory (the store root and state dir are in it)
# and one cgroup parent (/capsa-demo-<pid>), both removed on exit, whatever happens.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/bundle.sh
source "$repo/scripts/lib/bundle.sh"

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: must run as root" >&2
    exit 1
fi

# A new user's first command: install what capsa needs (idempotent; quick when all is there).
if [[ -z ${CAPSA_DEMO_SKIP_INSTALL:-} ]]; then
    echo "demo.sh: installing what capsa needs (scripts/install-deps.sh)"
    bash "$repo/scripts/install-deps.sh"
fi

echo "demo.sh: building capsa (release)"
(cd "$repo" && cargo build --release --quiet -p capsa-host --bins)
# The shim is exec'd inside the container's rootfs: static, without a compiler.
bash "$repo/scripts/build-shim.sh" --release

tmp=$(mktemp -d /tmp/capsa-demo.XXXXXX)
cgroup=/capsa-demo-$$
capsa=("$repo/target/release/capsa" --root "$tmp/root" --state "$tmp/state")
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    "${capsa[@]}" rm -f demo-native demo-wasm >/dev/null 2>&1 || true
    remove_cgroup_everywhere "$cgroup"
    rm -rf "$tmp"
}
trap cleanup EXIT

# The native image: a busybox-static rootfs as a tarball, imported.
make_busybox_rootfs "$tmp/rootfs"
tar -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .
"${capsa[@]}" import "$tmp/rootfs.tar" capsa-demo/busybox:1 >/dev/null

# The wasm image: a WASI module as a CNCF wasm OCI artifact (config
# application/vnd.wasm.config.v0+json, the module as one application/wasm layer).
cat >"$tmp/hello.c" <<'C'
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("hello from wasm: %s, GREETING=%s\n", argv[0], getenv("GREETING"));
    printf("the container's /:");
    DIR *root = opendir("/");
    for (struct dirent *e; root && (e = readdir(root));) if (e->d_name[0] != '.') printf(" %s", e->d_name);
    printf("\n");
    return 0;
}
C
clang-14 --target=wasm32-wasi -O2 -o "$tmp/hello.wasm" "$tmp/hello.c"
layout=$tmp/hello-layout
mkdir -p "$layout/blobs/sha256"
# blob FILE: stores FILE in the layout under its digest; prints "sha256:HEX SIZE".
blob() {
    local hex
    hex=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$layout/blobs/sha256/$hex"
    echo "sha256:$hex $(stat -c %s "$1")"
}
read -r module_digest module_size < <(blob "$tmp/hello.wasm")
jq -cn --arg d "$module_digest" '{architecture: "wasm", os: "wasip1", layerDigests: [$d]}' >"$tmp/config.json"
read -r config_digest config_size < <(blob "$tmp/config.json")
jq -cn --arg cd "$config_digest" --argjson cs "$config_size" \
    --arg md "$module_digest" --argjson ms "$module_size" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.wasm.config.v0+json", digest: $cd, size: $cs},
    layers: [{mediaType: "application/wasm", digest: $md, size: $ms}]}' >"$tmp/manifest.json"
read -r manifest_digest manifest_size < <(blob "$tmp/manifest.json")
jq -n --arg d "$manifest_digest" --argjson s "$manifest_size" '{
    schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: $d, size: $s,
    annotations: {"org.opencontainers.image.ref.name": "capsa-demo/hello-wasm:1"}}]}' >"$layout/index.json"
echo '{"imageLayoutVersion": "1.0.0"}' >"$layout/oci-layout"
"${capsa[@]}" load -q -i "$layout"

echo "demo.sh: the images (capsa images)"
"${capsa[@]}" images

# shellcheck disable=SC2016 # expanded inside the container
script='echo "hostname:   $(hostname)"
echo "my pid:     $$"
echo "pid 1:      $(cat /proc/1/comm)"
echo "id:         $(id)"
echo "processes:  $(ls -d /proc/[0-9]* | wc -l)"
echo "network:    $(ls /sys/class/net | tr "\n" " ")"
echo "root fs:    $(touch /probe 2>/dev/null && echo writable || echo read-only)"'

status=0
echo "demo.sh: capsa run --rm capsa-demo/busybox:1 (a native container)"
echo "---"
"${capsa[@]}" run --rm --name demo-native --hostname capsa-demo --network none --read-only \
    --cgroup-parent "$cgroup" capsa-demo/busybox:1 sh -c "$script" </dev/null || status=$?
echo "---"
echo "demo.sh: the native container exited with status $status"
[[ $status -eq 0 ]] || exit "$status"

echo "demo.sh: capsa run --rm capsa-demo/hello-wasm:1 (a WASI module under capsa-shim)"
echo "---"
"${capsa[@]}" run --rm --name demo-wasm --network none -e GREETING=hi --cgroup-parent "$cgroup" \
    capsa-demo/hello-wasm:1 </dev/null || status=$?
echo "---"
echo "demo.sh: the wasm container exited with status $status"
exit "$status"
