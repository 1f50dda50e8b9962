#!/usr/bin/env bash
# The wasm start benchmark (issue 4): how long `run` of a hello-world WASI module takes, start to
# exit, container deleted, under capsa-runtime with a warm compilation cache (and the same for a
# 10 MB module, next to bare wasmtime running it precompiled), next to capsa's own
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

# A 10 MB module (a 10 MB initialised data segment, as a language runtime compiled to wasm carries),
# for the warm start of a large module: what a warm start costs beyond the hello module's is
# reading and hashing module and artifact, which capsa remembers by file identity
# (host/src/wasm/digest.rs).
cat >"$work/big.c" <<'C'
#include <stdio.h>
#define MB (1024 * 1024)
static const char payload[10 * MB] = { [0 ... 10 * MB - 1] = 7 };
int main(int argc, char **argv) { (void)argv; printf("hello from wasm %d\n", payload[(argc * 7919) % (10 * MB)]); return 0; }
C
clang-14 --target=wasm32-wasi -O2 -Wl,--strip-all -o "$work/big.wasm" "$work/big.c"
mkdir -p "$work/big"
make_busybox_rootfs "$work/big/rootfs"
cp "$work/big.wasm" "$work/big/rootfs/hello.wasm"
write_busybox_config "$work/big" '["/hello.wasm"]' "$cgroup-wasm" bench
jq '.annotations = {"run.oci.handler": "wasm"}' "$work/big/config.json" >"$work/big/c.json"
mv "$work/big/c.json" "$work/big/config.json"

capsa=("$CAPSA_RUNTIME" --root "$work/state")
"${capsa[@]}" run --bundle "$work/wasm" bench-wasm | grep -q "hello from wasm" ||
    die "the wasm bundle does not print its greeting under capsa-runtime"
"${capsa[@]}" run --bundle "$work/big" bench-wasm | grep -q "hello from wasm 7" ||
    die "the 10 MB module does not print its greeting under capsa-runtime"
# A warm start as it is from the third run on: digests are remembered once a file's last change is
# 2 s old (the first run compiled the artifacts a moment ago).
sleep 2.1
"${capsa[@]}" run --bundle "$work/wasm" bench-wasm >/dev/null
"${capsa[@]}" run --bundle "$work/big" bench-wasm >/dev/null

# youki's `run` hung once in a few hundred runs here (its init a zombie, youki waiting, SIGTERM
# ignored), which would stall the whole benchmark. A watchdog kills a youki of this benchmark
# (matched by its command line from its start, so not hyperfine, nor anything else) that runs for over 30 s; hyperfine's -i keeps going
# and the failed run shows in its output. Nothing wraps the commands, so their times are clean.
commands=(
    -n capsa-wasm "${capsa[*]} run --bundle $work/wasm bench-wasm"
    -n capsa-native "${capsa[*]} run --bundle $work/native bench-native"
    -n capsa-wasm-10mb "${capsa[*]} run --bundle $work/big bench-wasm"
)
# The floors, in the same run: the namespaces alone, and bare wasmtime (precompiled) inside them.
commands+=(-n floor "unshare -pfmuin /bin/true")
if [[ -n ${WASMTIME:-} ]]; then
    "$WASMTIME" compile -o "$work/hello.cwasm" "$work/hello.wasm"
    commands+=(-n wasmtime "$WASMTIME run $work/hello.wasm")
    commands+=(-n wasmtime-precompiled "$WASMTIME run --allow-precompiled $work/hello.cwasm")
    commands+=(-n wasmtime-precompiled-unshare
        "unshare -pfmuin $WASMTIME run --allow-precompiled $work/hello.cwasm")
    "$WASMTIME" compile -o "$work/big.cwasm" "$work/big.wasm"
    commands+=(-n wasmtime-10mb-precompiled "$WASMTIME run --allow-precompiled $work/big.cwasm")
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

# A larger module for the cold start: 4000 functions of arithmetic (about 1 MB of code), where
# compiling in parallel pays.
{
    echo '#include <stdio.h>'
    for ((f = 0; f < 4000; f++)); do
        echo "__attribute__((noinline)) int f$f(int x) { for (int i = 0; i < x % 7 + 3; i++) x = x * $((f + 3)) + (x >> 3) - i; return x ^ $f; }"
    done
    echo 'int main(int argc, char **argv) { int x = argc;'
    for ((f = 0; f < 4000; f++)); do echo "x = f$f(x);"; done
    echo 'printf("%d\n", x & 1); puts("hello from wasm"); return 0; }'
} >"$work/large.c"
clang-14 --target=wasm32-wasi -O1 -Wl,--strip-all -o "$work/large.wasm" "$work/large.c"
mkdir -p "$work/large"
make_busybox_rootfs "$work/large/rootfs"
cp "$work/large.wasm" "$work/large/rootfs/hello.wasm"
write_busybox_config "$work/large" '["/hello.wasm"]' "$cgroup-wasm" bench
jq '.annotations = {"run.oci.handler": "wasm"}' "$work/large/config.json" >"$work/large/c.json"
mv "$work/large/c.json" "$work/large/config.json"

echo "wasm.sh: cold starts (cache emptied before each of $COLD_RUNS runs)"
cold=(
    -n capsa-wasm-cold "${capsa[*]} run --bundle $work/wasm bench-wasm"
    -n capsa-large-cold "${capsa[*]} run --bundle $work/large bench-wasm"
)
if [[ -n ${WASMTIME:-} ]]; then
    cold+=(-n wasmtime-compile "$WASMTIME compile -o $work/out.cwasm $work/hello.wasm")
    cold+=(-n wasmtime-compile-large "$WASMTIME compile -o $work/out.cwasm $work/large.wasm")
fi
hyperfine -N --style basic --runs "$COLD_RUNS" --prepare "rm -rf $work/state/.wasm-cache" \
    --export-json "$OUT/cold.json" "${cold[@]}" >/dev/null

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
    printf '  %-16s median %7.2f ms\n' capsa-wasm-10mb "$(median_ms "$OUT/warm.json" capsa-wasm-10mb)"
    for name in floor ${WASMTIME:+wasmtime wasmtime-precompiled wasmtime-precompiled-unshare wasmtime-10mb-precompiled} ${YOUKI:+youki}; do
        printf '  %-30s median %7.2f ms\n' "$name" "$(median_ms "$OUT/warm.json" "$name")"
    done
    for name in capsa-wasm-cold capsa-large-cold ${WASMTIME:+wasmtime-compile wasmtime-compile-large}; do
        printf '  %-30s median %7.2f ms\n' "$name" "$(median_ms "$OUT/cold.json" "$name")"
    done
    ratio() { # ratio FILE A FILE B
        awk -v a="$(median_ms "$1" "$2")" -v b="$(median_ms "$3" "$4")" -v n="$2 / $4" \
            'BEGIN { printf "  ratio %-48s %.2fx\n", n, a / b }'
    }
    ratio "$OUT/warm.json" capsa-wasm "$OUT/warm.json" capsa-native
    ratio "$OUT/warm.json" capsa-native "$OUT/warm.json" floor
    if [[ -n ${WASMTIME:-} ]]; then
        ratio "$OUT/warm.json" capsa-wasm "$OUT/warm.json" wasmtime-precompiled
        ratio "$OUT/warm.json" capsa-wasm "$OUT/warm.json" wasmtime-precompiled-unshare
        ratio "$OUT/warm.json" capsa-wasm "$OUT/warm.json" wasmtime
        ratio "$OUT/warm.json" capsa-wasm-10mb "$OUT/warm.json" wasmtime-10mb-precompiled
        ratio "$OUT/cold.json" capsa-wasm-cold "$OUT/cold.json" wasmtime-compile
        ratio "$OUT/cold.json" capsa-large-cold "$OUT/cold.json" wasmtime-compile-large
    fi
    [[ -n ${YOUKI:-} ]] && ratio "$OUT/warm.json" capsa-wasm "$OUT/warm.json" youki
    echo "  capsa-shim: $shim_bytes bytes, $cranelift_symbols symbols of Cranelift's code generator (cranelift_codegen)"
    echo "  peak RSS of a warm run (max of capsa-runtime and the shim): $rss_kb KB"
    echo "  peak RSS of capsa-shim alone running the module: $shim_rss_kb KB"
} | tee "$OUT/report.txt"
