#!/usr/bin/env bash
# Density (issue 18): the memory an idle container costs, per container, with N of them running
# at once (default 50), side by side with the peers, in one run.
#
#   native, runtime level  N `sleep` containers started detached by capsa-runtime, crun and runc
#                          (busybox-static, the lifecycle bundle's envelope): what stays is the
#                          container's own processes (none of these runtimes leaves a monitor).
#   native, engine level   N `capsa run -d IMAGE sleep` (capsa-monitor + payload) and, when podman
#                          is there, N `podman run -d` (conmon + payload; crun), same image.
#   wasm                   N wasm containers under capsa-runtime (capsa-shim running a module that
#                          sleeps), for a hello-sized module and a 10 MB one (a 10 MB data segment),
#                          next to N bare `wasmtime run` of the same precompiled modules when
#                          WASMTIME=/path/to/wasmtime is given (no container: the floor). youki
#                          is not measured here: it is not installed on this machine.
#
# For each group: per container, the mean RSS, PSS (shared pages divided among their users: the
# fair share) and USS (private pages), summed over every process that belongs to the container
# (its cgroup's processes, plus its monitor for the engines), from /proc/PID/smaps_rollup. The
# runtime's own process must be gone once a detached start returns: any left is reported.
#
# Usage (as root): bench/density.sh [N]       env: CAPSA_RUNTIME, CAPSA_BIN, WASMTIME, OUT
# Needs the release builds: cargo build --release -p capsa-host && scripts/build-shim.sh --release
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/bundle.sh
source "$repo/scripts/lib/bundle.sh"

N=${1:-50}
CAPSA_RUNTIME=${CAPSA_RUNTIME:-$repo/target/release/capsa-runtime}
CAPSA_BIN=${CAPSA_BIN:-$repo/target/release/capsa}
OUT=${OUT:-$repo/bench/out/density}

die() {
    echo "density.sh: $*" >&2
    exit 1
}
[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ -x $CAPSA_RUNTIME && -x $CAPSA_BIN ]] || die "release builds missing (cargo build --release -p capsa-host)"
[[ -x $(dirname "$CAPSA_RUNTIME")/capsa-shim ]] || die "capsa-shim missing (scripts/build-shim.sh --release)"
for tool in jq clang-14 busybox; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh)"
done
if [[ -z ${CAPSA_BENCH_IN_NAMESPACE:-} ]]; then
    exec unshare -m --propagation private env CAPSA_BENCH_IN_NAMESPACE=1 bash "$0" "$@"
fi
if mountpoint -q /sys/fs/cgroup/unified; then
    umount /sys/fs/cgroup/unified
fi

work=$(mktemp -d /tmp/capsa-bench-density.XXXXXX)
cgroup=/capsa-bench-density-$$
bare_pids=()
cleanup() {
    for pid in "${bare_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for rt in capsa crun runc capsa-sleep capsa-big; do
        local bin
        case $rt in
        capsa*) bin=$CAPSA_RUNTIME ;;
        *) bin=$(command -v "$rt" || true) ;;
        esac
        [[ -n $bin && -d $work/state-$rt ]] || continue
        for ((i = 0; i < N; i++)); do
            "$bin" --root "$work/state-$rt" delete --force "d$i" >/dev/null 2>&1 || true
        done
    done
    if [[ -d $work/engine ]]; then
        "$CAPSA_BIN" --root "$work/engine" --state "$work/engine-state" ps -aq 2>/dev/null |
            xargs -r "$CAPSA_BIN" --root "$work/engine" --state "$work/engine-state" rm -f >/dev/null 2>&1 || true
    fi
    if [[ -d $work/podman ]]; then
        podman --root "$work/podman" --runroot "$work/podman-run" rm -af -t 0 >/dev/null 2>&1 || true
        podman --root "$work/podman" --runroot "$work/podman-run" rmi -af >/dev/null 2>&1 || true
    fi
    grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    for d in /sys/fs/cgroup/*/"${cgroup#/}"*; do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$OUT"

# KB of RSS, PSS and USS of the given pids, summed: "rss pss uss".
memory_of() {
    local rss=0 pss=0 uss=0 pid line
    # A process may be found twice (a monitor inside the container's cgroup): count it once.
    for pid in $(printf '%s\n' "$@" | sed '/^$/d' | sort -un); do
        [[ -r /proc/$pid/smaps_rollup ]] || continue
        while read -r line; do
            set -- $line
            case $1 in
            Rss:) rss=$((rss + $2)) ;;
            Pss:) pss=$((pss + $2)) ;;
            Private_Clean: | Private_Dirty:) uss=$((uss + $2)) ;;
            esac
        done </proc/"$pid"/smaps_rollup
    done
    echo "$rss $pss $uss"
}

# The pids in cgroup PATH (the pids hierarchy), recursively.
cgroup_pids() {
    cat /sys/fs/cgroup/pids"$1"/cgroup.procs 2>/dev/null || true
    find /sys/fs/cgroup/pids"$1" -mindepth 2 -name cgroup.procs -exec cat {} + 2>/dev/null || true
}

report=$OUT/report.txt
: >"$report"
line() { echo "$*" | tee -a "$report"; }
# report_group NAME TOTAL_RSS TOTAL_PSS TOTAL_USS PROCESSES
count_unique() { printf '%s\n' "$@" | sed '/^$/d' | sort -un | wc -l; }
report_group() {
    awk -v n="$N" -v name="$1" -v r="$2" -v p="$3" -v u="$4" -v procs="$5" 'BEGIN {
        printf "  %-34s per container: RSS %7.2f MB  PSS %7.2f MB  USS %7.2f MB  (%d processes for %d containers)\n",
            name, r / n / 1024, p / n / 1024, u / n / 1024, procs, n }' | tee -a "$report"
}

line "# density: memory per idle container, $N containers at a time, $(date -u +%FT%TZ)"
line "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r); cgroup v1 (unified unmounted)"

# --- native, runtime level ----------------------------------------------------------------------
mkdir -p "$work/native"
make_busybox_rootfs "$work/native/rootfs"
make_bundle() { # make_bundle DIR ARGS_JSON CGROUP ROOTFS [ANNOTATIONS_JSON]
    mkdir -p "$1"
    write_busybox_config "$1" "$2" "$3" density
    jq --arg root "$4" --argjson ann "${5:-{\}}" '.root.path = $root | .annotations = $ann' \
        "$1/config.json" >"$1/c.json"
    mv "$1/c.json" "$1/config.json"
}
runtime_group() { # runtime_group NAME BINARY BUNDLE_PREFIX
    local name=$1 bin=$2 prefix=$3 pids=() i
    for ((i = 0; i < N; i++)); do
        "$bin" --root "$work/state-$name" run --detach --bundle "$prefix-$i" "d$i" \
            </dev/null >/dev/null 2>&1 || { echo "  $name: run d$i failed" | tee -a "$report"; return 0; }
    done
    sleep 1
    for ((i = 0; i < N; i++)); do
        mapfile -t -O "${#pids[@]}" pids < <(cgroup_pids "$cgroup-$name-$i")
    done
    local left
    left=$(pgrep -f -- "--root $work/state-$name" | grep -vc "^$$\$" || true)
    read -r rss pss uss < <(memory_of "${pids[@]}")
    report_group "$name" "$rss" "$pss" "$uss" "${#pids[@]}"
    ((left == 0)) || line "    ($left runtime processes still running after the detached starts)"
    for ((i = 0; i < N; i++)); do
        "$bin" --root "$work/state-$name" delete --force "d$i" >/dev/null 2>&1 || true
    done
}
line "native, runtime level (busybox sleep, no monitor):"
for rt in capsa crun runc; do
    case $rt in
    capsa) bin=$CAPSA_RUNTIME ;;
    *) bin=$(command -v "$rt" || true) ;;
    esac
    [[ -n $bin ]] || { line "  $rt: not installed, skipped"; continue; }
    for ((i = 0; i < N; i++)); do
        make_bundle "$work/b-$rt-$i" '["sleep", "100000"]' "$cgroup-$rt-$i" "$work/native/rootfs"
    done
    runtime_group "$rt" "$bin" "$work/b-$rt"
done

# --- native, engine level -----------------------------------------------------------------------
tar -C "$work/native/rootfs" -cf "$work/rootfs.tar" .
C=("$CAPSA_BIN" --root "$work/engine" --state "$work/engine-state")
"${C[@]}" import "$work/rootfs.tar" density:1 >/dev/null
line "native, engine level (busybox sleep, monitor included):"
for ((i = 0; i < N; i++)); do
    "${C[@]}" run -d --network none --name "e$i" --cgroup-parent "$cgroup-engine" density:1 sleep 100000 >/dev/null
done
sleep 1
mapfile -t pids < <(cgroup_pids "$cgroup-engine")
mapfile -t -O "${#pids[@]}" pids < <(pgrep -f -- "capsa-monitor.*$work/engine" || true)
read -r rss pss uss < <(memory_of "${pids[@]}")
report_group "capsa run -d (capsa-monitor + payload)" "$rss" "$pss" "$uss" "$(count_unique "${pids[@]}")"
monitors=$(pgrep -fc -- "capsa-monitor.*$work/engine" || true)
read -r mrss mpss muss < <(memory_of $(pgrep -f -- "capsa-monitor.*$work/engine" || true))
report_group "  of which capsa-monitor ($monitors)" "$mrss" "$mpss" "$muss" "$monitors"
"${C[@]}" ps -aq | xargs -r "${C[@]}" rm -f >/dev/null
if command -v podman >/dev/null; then
    P=(podman --root "$work/podman" --runroot "$work/podman-run")
    "${P[@]}" import "$work/rootfs.tar" localhost/density:1 >/dev/null
    for ((i = 0; i < N; i++)); do
        "${P[@]}" run -d --network none --cgroup-parent "$cgroup-podman" \
            --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 localhost/density:1 sleep 100000 >/dev/null
    done
    sleep 1
    mapfile -t pids < <(cgroup_pids "$cgroup-podman")
    conmons=$(pgrep -f -- "conmon.*$work/podman" || true)
    mapfile -t -O "${#pids[@]}" pids < <(echo "$conmons" | sed '/^$/d')
    read -r rss pss uss < <(memory_of "${pids[@]}")
    report_group "podman run -d (conmon + payload)" "$rss" "$pss" "$uss" "$(count_unique "${pids[@]}")"
    read -r mrss mpss muss < <(memory_of $conmons)
    report_group "  of which conmon ($(echo "$conmons" | sed '/^$/d' | wc -l))" "$mrss" "$mpss" "$muss" "$(echo "$conmons" | sed '/^$/d' | wc -l)"
    "${P[@]}" rm -af -t 0 >/dev/null 2>&1 || true
else
    line "  podman: not installed, skipped"
fi

# --- wasm ---------------------------------------------------------------------------------------
cat >"$work/sleep.c" <<'C'
#include <stdio.h>
#include <unistd.h>
int main(void) { puts("ready"); fflush(stdout); sleep(100000); return 0; }
C
# 10 MB of initialised data, touched by nothing: a data segment the module must carry.
cat >"$work/big.c" <<'C'
#include <stdio.h>
#include <unistd.h>
#define MB (1024 * 1024)
static const char payload[10 * MB] = { [0 ... 10 * MB - 1] = 7 };
int main(int argc, char **argv) { (void)argv; printf("ready %d\n", payload[(argc * 7919) % (10 * MB)]); fflush(stdout); sleep(100000); return 0; }
C
for m in sleep big; do
    clang-14 --target=wasm32-wasi -O2 -Wl,--strip-all -o "$work/$m.wasm" "$work/$m.c"
done
line "wasm (module sizes: hello $(stat -c %s "$work/sleep.wasm") bytes, big $(stat -c %s "$work/big.wasm") bytes):"
for m in sleep big; do
    mkdir -p "$work/wasm-$m"
    make_busybox_rootfs "$work/wasm-$m/rootfs"
    cp "$work/$m.wasm" "$work/wasm-$m/rootfs/app.wasm"
    for ((i = 0; i < N; i++)); do
        make_bundle "$work/b-capsa-$m-$i" '["/app.wasm"]' "$cgroup-capsa-$m-$i" "$work/wasm-$m/rootfs" \
            '{"run.oci.handler": "wasm"}'
    done
    # One run first fills the compilation cache (the figure is the idle container, not the compile).
    "$CAPSA_RUNTIME" --root "$work/state-capsa-$m" run --detach --bundle "$work/b-capsa-$m-0" d0 </dev/null >/dev/null 2>&1
    "$CAPSA_RUNTIME" --root "$work/state-capsa-$m" delete --force d0 >/dev/null 2>&1
    runtime_group "capsa-$m" "$CAPSA_RUNTIME" "$work/b-capsa-$m"
    if [[ -n ${WASMTIME:-} ]]; then
        "$WASMTIME" compile -o "$work/$m.cwasm" "$work/$m.wasm"
        bare_pids=()
        for ((i = 0; i < N; i++)); do
            "$WASMTIME" run --allow-precompiled "$work/$m.cwasm" </dev/null >/dev/null 2>&1 &
            bare_pids+=($!)
        done
        sleep 1
        read -r rss pss uss < <(memory_of "${bare_pids[@]}")
        report_group "bare wasmtime run, $m module" "$rss" "$pss" "$uss" "${#bare_pids[@]}"
        for pid in "${bare_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
        wait 2>/dev/null || true
        bare_pids=()
    fi
done
[[ -n ${WASMTIME:-} ]] || line "  bare wasmtime: WASMTIME not given, skipped"
line "  youki: not measured (not installed on this machine)"
line "runwasi's published figure (wasmtime shim, another machine): 22.7 MB per container"
