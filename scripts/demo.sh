#!/usr/bin/env bash
# capsa's demo: installs what capsa needs, builds capsa (release) and runs a container with it,
# printing what the container sees of itself: a native container (busybox-static) and a wasm one (a
# WASI module built here with clang-14, run by capsa-shim in the same envelope), both as bundles
# under `capsa-runtime run`. Runs as root.
#
# Everything it makes lives in one temporary directory and one cgroup (/capsa-demo-<pid>), both
# removed on exit, whatever happens. CAPSA_DEMO_RUNTIME=/path/to/runc runs the same bundle under
# another runc-compatible runtime, to compare.
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

if [[ -z ${CAPSA_DEMO_RUNTIME:-} ]]; then
    echo "demo.sh: building capsa (release)"
    (cd "$repo" && cargo build --release --quiet -p capsa-host --bin capsa-runtime)
    # The shim is exec'd inside the container's rootfs: static, without a compiler.
    bash "$repo/scripts/build-shim.sh" --release
    runtime=$repo/target/release/capsa-runtime
else
    runtime=$CAPSA_DEMO_RUNTIME
fi

tmp=$(mktemp -d /tmp/capsa-demo.XXXXXX)
id=capsa-demo-$$
cgroup=/capsa-demo-$$
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    "$runtime" --root "$tmp/state" delete --force "$id" >/dev/null 2>&1 || true
    "$runtime" --root "$tmp/state" delete --force "$id-wasm" >/dev/null 2>&1 || true
    remove_cgroup_everywhere "$cgroup"
    remove_cgroup_everywhere "$cgroup-wasm"
    rm -rf "$tmp"
}
trap cleanup EXIT

make_busybox_rootfs "$tmp/bundle/rootfs"
# shellcheck disable=SC2016 # expanded inside the container
script='echo "hostname:   $(hostname)"
echo "my pid:     $$"
echo "pid 1:      $(cat /proc/1/comm)"
echo "id:         $(id)"
echo "processes:  $(ls -d /proc/[0-9]* | wc -l)"
echo "network:    $(ls /sys/class/net | tr "\n" " ")"
echo "root fs:    $(touch /probe 2>/dev/null && echo writable || echo read-only)"'
write_busybox_config "$tmp/bundle" "$(jq -cn --arg s "$script" '["/bin/sh", "-c", $s]')" "$cgroup" capsa-demo

echo "demo.sh: $runtime run $id"
echo "---"
status=0
"$runtime" --root "$tmp/state" run --bundle "$tmp/bundle" "$id" </dev/null || status=$?
echo "---"
echo "demo.sh: the container exited with status $status"
[[ $status -eq 0 ]] || exit "$status"

if [[ -n ${CAPSA_DEMO_RUNTIME:-} ]]; then
    exit 0 # another runtime: it has no wasm handler
fi

# The same envelope, with a WASI module as its program: capsa-runtime compiles it ahead of time
# (cached under --root) and execs capsa-shim instead of a native binary.
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
make_busybox_rootfs "$tmp/wasm/rootfs"
install -m 0755 "$tmp/hello.wasm" "$tmp/wasm/rootfs/hello.wasm"
write_busybox_config "$tmp/wasm" '["/hello.wasm"]' "$cgroup-wasm" capsa-demo-wasm
jq '.annotations["run.oci.handler"] = "wasm" | .process.env += ["GREETING=hi"]' \
    "$tmp/wasm/config.json" >"$tmp/wasm/config.json.new"
mv "$tmp/wasm/config.json.new" "$tmp/wasm/config.json"

echo "demo.sh: $runtime run $id-wasm (a WASI module under capsa-shim)"
echo "---"
"$runtime" --root "$tmp/state" run --bundle "$tmp/wasm" "$id-wasm" </dev/null || status=$?
echo "---"
echo "demo.sh: the wasm container exited with status $status"
exit "$status"
