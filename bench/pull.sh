#!/usr/bin/env bash
# The pull + unpack benchmark (shared/BENCHMARKS.md): a five-layer image of about 120 MB
# uncompressed (busybox-static, then Python's standard library, Perl's, glibc's locale sources
# and Perl's XS modules from this machine's /usr: many small files, as real images have), served
# by Debian's docker-registry on 127.0.0.1, pulled into a runnable state, cold, by:
#   capsa:        the capsa-images pull (target/release/examples/pull): layers downloaded in
#                 parallel, verified, unpacked into the store (overlay lower dirs)
#   skopeo+umoci: `skopeo copy docker://… oci:DIR:v1 && umoci unpack --image DIR:v1 BUNDLE`
#   podman:       `podman pull --tls-verify=false` into its own --root (overlay driver)
# Each destination is emptied before every run (hyperfine --prepare); the registry's files are
# in the page cache for everyone. All it makes is under one temporary directory, removed on
# exit; it stops only the registry it started. The report (and hyperfine's JSON) also goes to
# bench/out/pull/.
#
#   cargo build --release -p capsa-images --example pull
#   sudo bench/pull.sh            # RUNS=20 WARMUP=2 by default
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-2}
PULL=${CAPSA_PULL:-$repo/target/release/examples/pull}
OUT=${OUT:-$repo/bench/out/pull}

die() {
    echo "pull.sh: $*" >&2
    exit 1
}

for tool in docker-registry skopeo umoci podman hyperfine jq python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh)"
done
[[ -x $PULL ]] || die "$PULL is missing: cargo build --release -p capsa-images --example pull"
[[ $(id -u) -eq 0 ]] || die "run as root (umoci unpack and podman keep ownership)"

tmp=$(mktemp -d /tmp/capsa-bench-pull.XXXXXX)
registry_pid=
cleanup() {
    if [[ -n $registry_pid ]]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    podman --root "$tmp/podman-root" --runroot "$tmp/podman-run" rmi -af >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- The registry. -----------------------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat >"$tmp/registry.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/registry
http:
  addr: $host
YAML
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done

# ---- The image: five layers, built with umoci, pushed with skopeo. ------------------------------
echo "== building the image"
umoci init --layout "$tmp/layout"
umoci new --image "$tmp/layout:v1"
# unpack + copy + repack per layer (umoci 0.4.7's `insert` of a directory writes a truncated tar).
umoci unpack --image "$tmp/layout:v1" "$tmp/build" >/dev/null
mkdir -p "$tmp/build/rootfs/bin"
cp /bin/busybox "$tmp/build/rootfs/bin/busybox"
ln -s busybox "$tmp/build/rootfs/bin/sh"
umoci repack --refresh-bundle --image "$tmp/layout:v1" "$tmp/build"
for dir in /usr/lib/python3.11 /usr/share/perl /usr/share/i18n /usr/lib/x86_64-linux-gnu/perl; do
    [[ -d $dir ]] || die "$dir is missing on this machine"
    mkdir -p "$tmp/build/rootfs$(dirname "$dir")"
    cp -a "$dir" "$tmp/build/rootfs$dir"
    umoci repack --refresh-bundle --image "$tmp/layout:v1" "$tmp/build"
done
skopeo copy -q --dest-tls-verify=false "oci:$tmp/layout:v1" "docker://$host/bench:v1"
layers=$(skopeo inspect --tls-verify=false "docker://$host/bench:v1" | jq '.Layers | length')
compressed=$(skopeo inspect --raw --tls-verify=false "docker://$host/bench:v1" | jq '[.layers[].size] | add')
uncompressed=$(du -sb "$tmp/build/rootfs" | awk '{print $1}')
echo "image: $layers layers, $((compressed / 1000000)) MB compressed, $((uncompressed / 1000000)) MB of files"

# ---- Each method once, checked: a rootfs with /bin/busybox. -------------------------------------
capsa_cmd="$PULL -q $tmp/capsa-store $host/bench:v1"
skopeo_cmd="sh -c 'skopeo copy -q --src-tls-verify=false docker://$host/bench:v1 oci:$tmp/sk:v1 && umoci unpack --image $tmp/sk:v1 $tmp/sk-bundle >/dev/null'"
podman_cmd="podman --root $tmp/podman-root --runroot $tmp/podman-run --storage-driver overlay pull -q --tls-verify=false $host/bench:v1"
capsa_prep="rm -rf $tmp/capsa-store"
skopeo_prep="rm -rf $tmp/sk $tmp/sk-bundle"
podman_prep="podman --root $tmp/podman-root --runroot $tmp/podman-run --storage-driver overlay rmi -af"

eval "$capsa_prep"; eval "$capsa_cmd"
find "$tmp/capsa-store/layers" -path '*/diff/bin/busybox' | grep -q . || die "capsa: no bin/busybox in the layers"
eval "$skopeo_prep"; eval "$skopeo_cmd"
[[ -x $tmp/sk-bundle/rootfs/bin/busybox ]] || die "skopeo+umoci: no rootfs/bin/busybox"
eval "$podman_cmd" >/dev/null
eval "$podman_prep" >/dev/null 2>&1 || true

# ---- Measure. ---------------------------------------------------------------------------------
echo "== $RUNS runs, $WARMUP warmup"
mkdir -p "$OUT"
hyperfine --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/pull.json" \
    -n capsa --prepare "$capsa_prep" "$capsa_cmd" \
    -n skopeo+umoci --prepare "$skopeo_prep" "$skopeo_cmd" \
    -n podman --prepare "$podman_prep >/dev/null 2>&1 || true" "$podman_cmd"

median() { jq -r --arg n "$1" '.results[] | select(.command == $n) | .median' "$OUT/pull.json"; }
spread() { jq -r --arg n "$1" '.results[] | select(.command == $n) | "min \(.min*1000|floor) ms, max \(.max*1000|floor) ms, stddev \(.stddev*1000|floor) ms"' "$OUT/pull.json"; }
c=$(median capsa) s=$(median skopeo+umoci) p=$(median podman)
{
    echo "pull + unpack of $host/bench:v1 ($layers layers, $((compressed / 1000000)) MB compressed, $((uncompressed / 1000000)) MB of files), $RUNS runs"
    echo "machine: $(nproc) cores, $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "versions: $(skopeo --version), $(umoci --version), $(podman --version), $(docker-registry --version | head -1)"
    for n in capsa skopeo+umoci podman; do
        printf '%-13s median %6.0f ms  (%s)\n' "$n" "$(echo "$(median "$n") * 1000" | bc -l)" "$(spread "$n")"
    done
    printf 'ratio capsa/skopeo+umoci: %.2f\n' "$(echo "$c / $s" | bc -l)"
    printf 'ratio capsa/podman:       %.2f\n' "$(echo "$c / $p" | bc -l)"
} | tee "$OUT/report.txt"
