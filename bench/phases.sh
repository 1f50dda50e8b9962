#!/usr/bin/env bash
# Where the milliseconds of a native start go: `capsa-runtime --debug --log F run` of the same
# bundle as bench/lifecycle.sh (busybox-static, the default namespaces, a cgroup, /bin/true), N
# times, and the median of every phase the runtime timestamps itself (runtime/timing.rs: bundle
# loaded, state dir and cgroup made, init cloned, placed in its cgroup, the init's own steps —
# namespaces, mounts and devices, seccomp, root switched, readonly/masked paths — ready,
# started, exited, deleted). Each phase is shown as the median time since the previous one, with
# the median wall-clock total of the same runs (the difference is the exec and the loader) and the
# namespace floor (`unshare -pfmuin /bin/true`) measured in the same sitting.
#
# A profile, not a comparison: debug logging itself costs a little (a formatted line per phase).
# Usage: sudo bench/phases.sh [RUNS] [native|wasm]   (default 200 native runs; the release builds:
# cargo build --release -p capsa-host && scripts/build-shim.sh --release). `wasm` profiles the
# same envelope running bench/wasm.sh's hello-world module through capsa-shim (warm cache).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/bundle.sh
source "$repo/scripts/lib/bundle.sh"

RUNS=${1:-200}
KIND=${2:-native}
CAPSA_RUNTIME=${CAPSA_RUNTIME:-$repo/target/release/capsa-runtime}

die() {
    echo "phases.sh: $*" >&2
    exit 1
}
[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ -x $CAPSA_RUNTIME ]] || die "$CAPSA_RUNTIME not found (cargo build --release -p capsa-host)"
if [[ -z ${CAPSA_BENCH_IN_NAMESPACE:-} ]]; then
    exec unshare -m --propagation private env CAPSA_BENCH_IN_NAMESPACE=1 bash "$0" "$@"
fi
if mountpoint -q /sys/fs/cgroup/unified; then
    umount /sys/fs/cgroup/unified
fi

work=$(mktemp -d /tmp/capsa-bench-phases.XXXXXX)
cgroup=/capsa-bench-phases-$$
cleanup() {
    "$CAPSA_RUNTIME" --root "$work/state" delete --force capsa-bench-phases >/dev/null 2>&1 || true
    remove_cgroup_everywhere "$cgroup"
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bundle"
make_busybox_rootfs "$work/bundle/rootfs"
case $KIND in
native) write_busybox_config "$work/bundle" '["/bin/true"]' "$cgroup" capsa-bench ;;
wasm)
    printf '#include <stdio.h>\nint main(void) { puts("hello from wasm"); return 0; }\n' >"$work/hello.c"
    clang-14 --target=wasm32-wasi -O2 -Wl,--strip-all -o "$work/bundle/rootfs/hello.wasm" "$work/hello.c"
    write_busybox_config "$work/bundle" '["/hello.wasm"]' "$cgroup" capsa-bench
    jq '.annotations = {"run.oci.handler": "wasm"}' "$work/bundle/config.json" >"$work/c.json"
    mv "$work/c.json" "$work/bundle/config.json"
    ;;
*) die "unknown kind $KIND (native or wasm)" ;;
esac

# Times come from $EPOCHREALTIME (bash 5: the clock without a fork), in microseconds.
: >"$work/totals"
: >"$work/floor"
for ((i = 0; i < RUNS + 10; i++)); do
    log=$work/log-$i
    start=${EPOCHREALTIME/[.,]/}
    "$CAPSA_RUNTIME" --debug --log "$log" --root "$work/state" run --bundle "$work/bundle" capsa-bench-phases >/dev/null
    end=${EPOCHREALTIME/[.,]/}
    fstart=${EPOCHREALTIME/[.,]/}
    unshare -pfmuin /bin/true
    fend=${EPOCHREALTIME/[.,]/}
    # The first 10 runs warm the caches and are not counted.
    if ((i >= 10)); then
        echo $((end - start)) >>"$work/totals"
        echo $((fend - fstart)) >>"$work/floor"
        sed -n 's/.*msg="phase \(.*\) +\([0-9.]*\) ms".*/\1\t\2/p' "$log" >>"$work/phases"
        echo "---" >>"$work/phases"
    fi
    rm -f "$log"
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
echo "# capsa-runtime run of a $KIND bundle, phases ($RUNS runs, medians), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores, kernel $(uname -r); cgroup v1 (unified unmounted); $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null || echo hybrid)"
# Per run, each phase's time since the previous phase; then the median per phase name, in order.
awk -F'\t' '
    $0 == "---" { prev = 0; next }
    { d = $2 - prev; prev = $2; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } print $1 "\t" d }
    END { for (i = 1; i <= n; i++) print "#order\t" order[i] }' "$work/phases" >"$work/deltas"
grep '^#order' "$work/deltas" | cut -f2 | while IFS= read -r phase; do
    m=$(awk -F'\t' -v p="$phase" '$1 == p { print $2 }' "$work/deltas" | median)
    printf '  %-55s %7.3f ms\n' "$phase" "$m"
done
total=$(median <"$work/totals")
floor=$(median <"$work/floor")
awk -v t="$total" -v f="$floor" 'BEGIN {
    printf "  %-55s %7.3f ms\n", "total (wall clock, exec and loader included)", t / 1000
    printf "  %-55s %7.3f ms   (total/floor = %.2f)\n", "floor: unshare -pfmuin /bin/true", f / 1000, t / f }'
