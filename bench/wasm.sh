#!/usr/bin/env bash
# The wasm start benchmark (issue 4): how long `run` of a hello-world WASI module takes, start to
# exit, container deleted, under capsa-runtime with a warm compilation cache, next to capsa's own
# native `/bin/true` in the same envelope, bare `wasmtime run` (no isolation) when WASMTIME=/path
# is set, and youki's wasmtime executor when YOUKI=/path is set.
#
# Also: the cold start (the cache emptied before every run, so create compiles), the size of
# capsa-shim (and whether it links Cranelift: it must not), and the peak RSS of one warm run.
#
# Needs the release builds (the shim static and without Cranelift):
#   cargo build --release -p capsa-host && scripts/build-shim.sh --release
# Like bench/lifecycle.sh, everything runs in one private mount namespace with the empty v2
# hierarchy of this hybrid host unmounted, so every runtime sees the same plain cgroup v1 host.
# and clang-14 with wasi-libc, hyperfine, jq, busybox-static (scripts/install-deps.sh).
# Everything it makes is under one temporary directory, removed on exit. The report also goes to
# bench/out/wasm/.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/bundle.sh
source "$repo/scripts/lib/bundle.sh"

RUNS=${RUNS:-200}
WARMUP=${WARMUP:-20}
COLD_RUNS=${COLD_RUNS:-20}
CAPSA_RUNTIME=${CAPSA_RUNTIME:-$repo/target/release/capsa-runtime}
OUT=${OUT:-$repo/bench/out/wasm}

die() {
    echo "wasm.sh: $*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root"
if [[ -z ${CAPSA_BENCH_IN_NAMESPACE:-} ]]; then
    exec unshare -m --propagation private env CAPSA_BENCH_IN_NAMESPACE=1 bash "$0" "$@"
fi
if mountpoint -q /sys/fs/cgroup/unified; then
    umount /sys/fs/cgroup/unified
fi
for tool in hyperfine jq clang-14; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh)"
done
shim=$(dirname "$CAPSA_RUNTIME")/capsa-shim
[[ -x $CAPSA_RUNTIME && -x $shim ]] ||
    die "$CAPSA_RUNTIME and $shim are needed: cargo build --release -p capsa-host && scripts/build-shim.sh --release"

work=$(mktemp -d /tmp/capsa-bench-wasm.XXXXXX)
cgroup=/capsa-bench-wasm-$$
watchdog=
cleanup() {
    [[ -z $watchdog ]] || kill "$watchdog" 2>/dev/null || true
    "$CAPSA_RUNTIME" --root "$work/state" delete --force bench-wasm >/dev/null 2>&1 || true
    "$CAPSA_RUNTIME" --root "$work/state" delete --force bench-native >/dev/null 2>&1 || true
    if [[ -n ${YOUKI:-} ]]; then
        "$YOUKI" --root "$work/youki-state" delete --force bench-youki >/dev/null 2>&1 || true
    fi
    for c in wasm native youki; do
        rmdir /sys/fs/cgroup/*/"${cgroup#/}-$c" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$OUT"

cat >"$work/hello.c" <<'C'
#include <stdio.h>
int main(void) { puts("hello from wasm"); return 0; }
C
clang-14 --target=wasm32-wasi -O2 -Wl,--strip-all -o "$work/hello.wasm" "$work/hello.c"

# Two bundles on one busybox rootfs layout: the module, and native /bin/true.
for kind in wasm native; do
    mkdir -p "$work/$kind"
    make_busybox_rootfs "$work/$kind/rootfs"
done
cp "$work/hello.wasm" "$work/wasm/rootfs/hello.wasm"
write_busybox_config "$work/native" '["/bin/true"]' "$cgroup-native" bench
write_busybox_config "$work/wasm" '["/hello.wasm"]' "$cgroup-wasm" bench
jq '.annotations = {"run.oci.handler": "wasm"}' "$work/wasm/config.json" >"$work/wasm/c.json"
mv "$work/wasm/c.json" "$work/wasm/config.json"

capsa=("$CAPSA_RUNTIME" --root "$work/state")
"${capsa[@]}" run --bundle "$work/wasm" bench-wasm | grep -q "hello from wasm" ||
    die "the wasm bundle does not print its greeting under capsa-runtime"

# youki's `run` hung once in a few hundred runs here (its init a zombie, youki waiting, SIGTERM
# ignored), which would stall the whole benchmark. A watchdog kills a youki of this benchmark
# (matched by its command line from its start, so not hyperfine, nor anything else) that runs for over 30 s; hyperfine's -i keeps going
# and the failed run shows in its output. Nothing wraps the commands, so their times are clean.
commands=(
    -n capsa-wasm "${capsa[*]} run --bundle $work/wasm bench-wasm"
    -n capsa-native "${capsa[*]} run --bundle $work/native bench-native"
)
if [[ -n ${WASMTIME:-} ]]; then
    commands+=(-n wasmtime "$WASMTIME run $work/hello.wasm")
fi
if [[ -n ${YOUKI:-} ]]; then
    mkdir -p "$work/youki"
    make_busybox_rootfs "$work/youki/rootfs"
    cp "$work/hello.wasm" "$work/youki/rootfs/hello.wasm"
    write_busybox_config "$work/youki" '["/hello.wasm"]' "$cgroup-youki" bench
    jq '.annotations = {"run.oci.handler": "wasm"}' "$work/youki/config.json" >"$work/youki/c.json"
    mv "$work/youki/c.json" "$work/youki/config.json"
    commands+=(-n youki "$YOUKI --root $work/youki-state run --bundle $work/youki bench-youki")
    (
        while sleep 5; do
            for pid in $(pgrep -f -- "^$YOUKI --root $work/youki-state run" || true); do
                if (($(ps -o etimes= -p "$pid" 2>/dev/null || echo 0) > 30)); then
                    kill -9 "$pid" 2>/dev/null || true
                fi
            done
        done
    ) &
    watchdog=$!
fi
echo "wasm.sh: warm starts ($RUNS runs, $WARMUP warmup)"
hyperfine -N -i --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/warm.json" \
    "${commands[@]}" >/dev/null

echo "wasm.sh: cold starts (cache emptied before each of $COLD_RUNS runs)"
hyperfine -N --style basic --runs "$COLD_RUNS" --prepare "rm -rf $work/state/.wasm-cache" \
    --export-json "$OUT/cold.json" \
    -n capsa-wasm-cold "${capsa[*]} run --bundle $work/wasm bench-wasm" >/dev/null

median_ms() {
    jq -r --arg name "$2" '.results[] | select(.command == $name) | .median * 1000' "$1"
}
rss_kb=$( { /usr/bin/time -f %M "${capsa[@]}" run --bundle "$work/wasm" bench-wasm >/dev/null; } 2>&1 | tail -1)
# The shim alone, outside any container, on the cached artifact: its own peak RSS.
artifact=$(find "$work/state/.wasm-cache" -name '*.cwasm' | head -1)
shim_rss_kb=$( { /usr/bin/time -f %M "$shim" --artifact-fd 3 --preopen /=/:ro -- hello 3<"$artifact" >/dev/null; } 2>&1 | tail -1)
shim_bytes=$(stat -c %s "$shim")
cranelift_symbols=$(nm "$shim" 2>/dev/null | grep -c cranelift_codegen || true)

{
    echo "capsa wasm benchmark, $(date -u +%F) on $(nproc) cores, $(uname -r)"
    printf '  %-16s median %7.2f ms\n' capsa-wasm "$(median_ms "$OUT/warm.json" capsa-wasm)"
    printf '  %-16s median %7.2f ms\n' capsa-native "$(median_ms "$OUT/warm.json" capsa-native)"
    [[ -n ${WASMTIME:-} ]] && printf '  %-16s median %7.2f ms\n' wasmtime "$(median_ms "$OUT/warm.json" wasmtime)"
    [[ -n ${YOUKI:-} ]] && printf '  %-16s median %7.2f ms\n' youki "$(median_ms "$OUT/warm.json" youki)"
    printf '  %-16s median %7.2f ms\n' capsa-wasm-cold "$(median_ms "$OUT/cold.json" capsa-wasm-cold)"
    wasm=$(median_ms "$OUT/warm.json" capsa-wasm)
    for peer in capsa-native ${WASMTIME:+wasmtime} ${YOUKI:+youki}; do
        awk -v a="$wasm" -v b="$(median_ms "$OUT/warm.json" "$peer")" -v p="$peer" \
            'BEGIN { printf "  ratio capsa-wasm / %-12s %.2fx\n", p, a / b }'
    done
    echo "  capsa-shim: $shim_bytes bytes, $cranelift_symbols symbols of Cranelift's code generator (cranelift_codegen)"
    echo "  peak RSS of a warm run (max of capsa-runtime and the shim): $rss_kb KB"
    echo "  peak RSS of capsa-shim alone running the module: $shim_rss_kb KB"
} | tee "$OUT/report.txt"
