#!/usr/bin/env bash
# The native lifecycle benchmark (shared/BENCHMARKS.md): how long `run` of one OCI bundle takes,
# start to exit, container deleted, under capsa-runtime and its peers on the same machine.
#
# The bundle: a busybox-static rootfs, the default namespaces (pid, network, ipc, uts, mount,
# cgroup), a cgroupsPath /capsa-bench-<pid>, process /bin/true, no terminal. Four methods:
#   run:    `RUNTIME run --bundle B ID` (which deletes the container when it exits, as runc does),
#           under hyperfine, each runtime's runs in one block
#   interleaved: the same, one run of each runtime per round (bash's clock), against drift
#   seccomp: the same with podman's default seccomp profile (/usr/share/containers/seccomp.json,
#           turned into the OCI form podman sends: x86_64 + x86 + x32, every unconditional rule)
#   youki:  youki's published method: `create -b B ID && start ID && delete -f ID` under a shell,
#           caches dropped before every run, warmup 10, 100 runs
# Every runtime runs inside one private mount namespace with /sys/fs/cgroup/unified unmounted
# (crun refuses this machine's hybrid layout otherwise), so they all see the same host.
#
# Runtimes: capsa (target/release/capsa-runtime; skipped with a message if missing or broken), runc
# and crun (from PATH), youki if YOUKI=/path/to/youki is set. See bench/README.md for the knobs.
# All it makes is under one temporary directory, removed on exit; it kills nothing it didn't start.
# The report (and hyperfine's JSON) also goes to bench/out/lifecycle/.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/bundle.sh
source "$repo/scripts/lib/bundle.sh"

RUNS=${RUNS:-200}
WARMUP=${WARMUP:-20}
YOUKI_METHOD_RUNS=${YOUKI_METHOD_RUNS:-100}
YOUKI_METHOD_WARMUP=${YOUKI_METHOD_WARMUP:-10}
DROP_CACHES=${DROP_CACHES:-1}
CAPSA_RUNTIME=${CAPSA_RUNTIME:-$repo/target/release/capsa-runtime}
OUT=${OUT:-$repo/bench/out/lifecycle}

die() {
    echo "lifecycle.sh: $*" >&2
    exit 1
}

# ---- Inside the private mount namespace: the measurements themselves. -------------------------
if [[ ${1:-} == __in_namespace ]]; then
    # Arguments: TMP, then NAME=PATH for every runtime to measure.
    tmp=$2
    shift 2
    if mountpoint -q /sys/fs/cgroup/unified; then
        umount /sys/fs/cgroup/unified
    fi
    run_args=() youki_args=()
    for entry in "$@"; do
        name=${entry%%=*} rt=${entry#*=}
        state=$tmp/state-$name id=capsa-bench-$name
        run_args+=(-n "$name" "$rt --root $state run --bundle $tmp/bundle $id")
        youki_args+=(-n "$name" "$rt --root $state create --bundle $tmp/bundle $id && $rt --root $state start $id && $rt --root $state delete --force $id")
    done
    # The kernel's floor for this work, in the same run: a fork into new pid, mount, uts, ipc and
    # network namespaces and an exec of /bin/true, nothing else (no rootfs, cgroup or state).
    run_args+=(-n floor "unshare -pfmuin /bin/true")
    echo "== method run: $RUNS runs, $WARMUP warmup"
    hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$tmp/run.json" "${run_args[@]}"
    # interleaved: the run method again, one run of each runtime (and the floor) per round, timed
    # with bash's clock, so the machine's drift and the kernel's grace periods (which double a
    # cgroup.procs write now and then) fall on all of them alike instead of on whichever
    # hyperfine block they hit.
    names=() commands=()
    for entry in "$@"; do
        names+=("${entry%%=*}")
        commands+=("${entry#*=} --root $tmp/state-${entry%%=*} run --bundle $tmp/bundle capsa-bench-${entry%%=*}")
    done
    names+=(floor) commands+=("unshare -pfmuin /bin/true")
    echo "== method interleaved: $RUNS rounds, $WARMUP warmup"
    : >"$tmp/interleaved.txt"
    for ((round = 0; round < RUNS + WARMUP; round++)); do
        for i in "${!names[@]}"; do
            start=${EPOCHREALTIME/[.,]/}
            ${commands[$i]} >/dev/null # (split into words on purpose: the paths have no spaces)
            end=${EPOCHREALTIME/[.,]/}
            ((round < WARMUP)) || echo "${names[$i]} $((end - start))" >>"$tmp/interleaved.txt"
        done
    done
    # The same JSON shape as hyperfine's, so the report reads both alike.
    jq -Rn '[inputs | split(" ") | {name: .[0], t: (.[1] | tonumber / 1e6)}] | group_by(.name)
        | {results: map((map(.t) | sort) as $t | ($t | add / length) as $m
            | {command: .[0].name, times: $t, mean: $m, median: $t[$t | length / 2 | floor],
               stddev: ($t | map((. - $m) * (. - $m)) | add / length | sqrt)})}' \
        "$tmp/interleaved.txt" >"$tmp/interleaved.json"
    seccomp_args=()
    for entry in "$@"; do
        name=${entry%%=*} rt=${entry#*=}
        seccomp_args+=(-n "$name" "$rt --root $tmp/state-$name run --bundle $tmp/bundle-seccomp capsa-bench-$name")
    done
    echo "== method seccomp: $RUNS runs, $WARMUP warmup"
    hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$tmp/seccomp.json" "${seccomp_args[@]}"
    prepare=(--prepare true)
    if [[ $DROP_CACHES == 1 ]]; then
        prepare=(--prepare 'sync; echo 3 > /proc/sys/vm/drop_caches')
    fi
    echo "== method youki (create + start + delete -f): $YOUKI_METHOD_RUNS runs, $YOUKI_METHOD_WARMUP warmup, drop caches: $DROP_CACHES"
    hyperfine --style basic "${prepare[@]}" --warmup "$YOUKI_METHOD_WARMUP" --runs "$YOUKI_METHOD_RUNS" \
        --export-json "$tmp/youki.json" "${youki_args[@]}"
    exit 0
fi

# ---- Outside: set up, check each runtime, measure, report, clean up. ---------------------------
[[ $(id -u) -eq 0 ]] || die "must run as root"
for tool in hyperfine jq unshare mountpoint; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/install-deps.sh)"
done

tmp=$(mktemp -d /tmp/capsa-bench.XXXXXX)
cgroup=/capsa-bench-$$
runtimes=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local entry name
    for entry in "${runtimes[@]}"; do
        name=${entry%%=*}
        "${entry#*=}" --root "$tmp/state-$name" delete --force "capsa-bench-$name" >/dev/null 2>&1 || true
        "${entry#*=}" --root "$tmp/state-$name" delete --force "capsa-bench-check-$name" >/dev/null 2>&1 || true
    done
    remove_cgroup_everywhere "$cgroup"
    rm -rf "$tmp"
}
trap cleanup EXIT

make_busybox_rootfs "$tmp/bundle/rootfs"
write_busybox_config "$tmp/bundle" '["/bin/true"]' "$cgroup" capsa-bench
# A twin bundle that says something, to check that a runtime really runs containers.
mkdir -p "$tmp/check"
write_busybox_config "$tmp/check" '["/bin/echo", "capsa-bench-ok"]' "$cgroup" capsa-bench
jq --arg rootfs "$tmp/bundle/rootfs" '.root.path = $rootfs' "$tmp/check/config.json" >"$tmp/check/c.json"
mv "$tmp/check/c.json" "$tmp/check/config.json"

# The seccomp twin: podman's default profile as podman hands it to the runtime.
podman_profile=/usr/share/containers/seccomp.json
[[ -f $podman_profile ]] || die "$podman_profile not found (package golang-github-containers-common)"
mkdir -p "$tmp/bundle-seccomp"
cp -a "$tmp/bundle/rootfs" "$tmp/bundle-seccomp/rootfs"
jq '{defaultAction, defaultErrnoRet: 38,
     architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
     syscalls: [.syscalls[] | select((.includes.caps // []) | length == 0)
                | {names, action, args: (.args // [])} + (if .errnoRet then {errnoRet} else {} end)]}' \
    "$podman_profile" >"$tmp/seccomp-profile.json"
jq --slurpfile profile "$tmp/seccomp-profile.json" '.linux.seccomp = $profile[0]' \
    "$tmp/bundle/config.json" >"$tmp/bundle-seccomp/config.json"

# check_runtime NAME PATH: runs the twin bundle once in the benchmark's conditions; true if the
# container printed what it should and the runtime deleted it.
check_runtime() {
    local name=$1 rt=$2 out
    out=$(unshare -m --propagation private sh -c \
        'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; exec "$@"' sh \
        "$rt" --root "$tmp/state-$name" run --bundle "$tmp/check" "capsa-bench-check-$name" 2>&1 </dev/null) || {
        echo "lifecycle.sh: skipping $name: a trial run failed: $out" >&2
        return 1
    }
    if [[ $out != capsa-bench-ok ]]; then
        echo "lifecycle.sh: skipping $name: the trial container printed '$out', not 'capsa-bench-ok'" >&2
        return 1
    fi
    if "$rt" --root "$tmp/state-$name" state "capsa-bench-check-$name" >/dev/null 2>&1; then
        echo "lifecycle.sh: skipping $name: run left the container behind" >&2
        return 1
    fi
}

candidates=()
if [[ -x $CAPSA_RUNTIME ]]; then
    candidates+=("capsa=$CAPSA_RUNTIME")
else
    echo "lifecycle.sh: skipping capsa: $CAPSA_RUNTIME not found (cargo build --release -p capsa-host)" >&2
fi
for peer in runc crun; do
    if path=$(command -v "$peer"); then
        candidates+=("$peer=$path")
    else
        echo "lifecycle.sh: skipping $peer: not on PATH" >&2
    fi
done
if [[ -n ${YOUKI:-} ]]; then
    candidates+=("youki=$YOUKI")
fi
for entry in "${candidates[@]}"; do
    if check_runtime "${entry%%=*}" "${entry#*=}"; then
        runtimes+=("$entry")
    fi
done
[[ ${#runtimes[@]} -gt 0 ]] || die "no runtime to measure"

unshare -m --propagation private "$0" __in_namespace "$tmp" "${runtimes[@]}" </dev/null

# ---- Report. ------------------------------------------------------------------------------------
# Medians, quartiles and extremes in milliseconds, from hyperfine's per-run times.
summarize() {
    jq -r '.results[] | (.times | sort | map(. * 1000)) as $t | ($t | length) as $n
        | [.command, $t[$n / 2 | floor], $t[$n / 4 | floor], $t[$n * 3 / 4 | floor], $t[0], $t[-1],
           .mean * 1000, .stddev * 1000, $n] | @tsv' "$1" |
        awk -F'\t' '{ printf "  %-6s median %7.2f ms   p25-p75 %7.2f - %7.2f ms   min-max %7.2f - %7.2f ms   mean %7.2f ± %5.2f ms   (%d runs)\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
}
median_of() {
    jq -r --arg name "$2" '.results[] | select(.command == $name) | .median' "$1"
}
ratios() {
    local capsa peer
    capsa=$(median_of "$1" capsa)
    [[ -n $capsa ]] || { echo "  ratios: capsa not measured"; return; }
    for peer in crun runc youki; do
        local m
        m=$(median_of "$1" "$peer")
        if [[ -n $m ]]; then
            awk -v a="$capsa" -v b="$m" -v p="$peer" 'BEGIN { printf "  capsa/%s = %.3f (ratio of medians)\n", p, a / b }'
        fi
    done
    # Every runtime as a multiple of the namespace floor measured in the same run (the regression
    # guard: a machine that got slower moves the floor too).
    local floor
    floor=$(median_of "$1" floor)
    if [[ -n $floor ]]; then
        for peer in capsa crun runc youki; do
            local m
            m=$(median_of "$1" "$peer")
            if [[ -n $m ]]; then
                awk -v a="$m" -v b="$floor" -v p="$peer" 'BEGIN { printf "  %s/floor = %.2f (floor: unshare -pfmuin /bin/true, %.2f ms)\n", p, a / b, b * 1000 }'
            fi
        done
    fi
}

mkdir -p "$OUT"
{
    echo "# capsa lifecycle benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "conditions: private mount namespace, /sys/fs/cgroup/unified unmounted (cgroup v1), cgroupsPath $cgroup"
    for entry in "${runtimes[@]}"; do
        echo "$(printf '%-6s' "${entry%%=*}") ${entry#*=}: $("${entry#*=}" --version 2>/dev/null | head -n 1)"
    done
    echo
    echo "method run: RUNTIME run --bundle B ID (deletes on exit); $RUNS runs, $WARMUP warmup, no shell"
    summarize "$tmp/run.json"
    ratios "$tmp/run.json"
    echo
    echo "method interleaved: as run, one run of each runtime and the floor per round; $RUNS rounds, $WARMUP warmup"
    summarize "$tmp/interleaved.json"
    ratios "$tmp/interleaved.json"
    echo
    echo "method seccomp: as run, with podman's default seccomp profile ($(jq '[.syscalls[].names[]] | length' "$tmp/seccomp-profile.json") syscall names, 3 architectures)"
    summarize "$tmp/seccomp.json"
    ratios "$tmp/seccomp.json"
    echo
    echo "method youki: create && start && delete -f under sh; $YOUKI_METHOD_RUNS runs, $YOUKI_METHOD_WARMUP warmup, drop caches before each run: $DROP_CACHES"
    summarize "$tmp/youki.json"
    ratios "$tmp/youki.json"
} | tee "$OUT/report.txt"
cp "$tmp/run.json" "$OUT/run.json"
cp "$tmp/seccomp.json" "$OUT/seccomp.json"
cp "$tmp/interleaved.json" "$OUT/interleaved.json"
cp "$tmp/youki.json" "$OUT/youki.json"
echo "(report and hyperfine JSON in ${OUT#"$repo"/})"
