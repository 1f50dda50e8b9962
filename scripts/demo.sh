#!/usr/bin/env bash
# capsa's demo: installs what capsa needs, builds capsa (release) and runs a container with it,
# printing what the container sees of itself. Today: a busybox-static bundle under `capsa-runtime run`. Runs as root.
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
    remove_cgroup_everywhere "$cgroup"
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
exit "$status"
