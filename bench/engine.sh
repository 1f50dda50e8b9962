#!/bin/sh
# bench/engine.sh: the engine against podman, side by side on this machine (BENCHMARKS.md).
#
#   1. `capsa run --rm IMAGE true` vs `podman run --rm --network none IMAGE true`, the same
#      busybox-static image in each engine's own store (podman's under this script's dir). Both
#      apply their default seccomp profile; `capsa (unconfined)` is the same run without one,
#      so the profile's own cost shows.
#   2. Unpacking a multi-layer OCI layout into a runnable rootfs: `capsa load` + `capsa create`
#      (layers unpacked once into the store, then an overlay mount) vs `umoci unpack`.
#
# Both engines run in the same private mount namespace with the empty cgroup v2 hierarchy
# unmounted: crun (podman's runtime here) refuses the hybrid layout otherwise. podman gets
# --ulimit flags because this host's containers.conf asks for limits the runtime may not set.
#
# Usage (as root): bench/engine.sh [RUNS]    env: CAPSA_BIN (default target/release/capsa)
set -eu
RUNS=${1:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
CAPSA=${CAPSA_BIN:-$here/target/release/capsa}
if [ ! -x "$CAPSA" ]; then
	(cd "$here" && cargo build --release -p capsa-host --bin capsa)
fi
for t in hyperfine podman umoci busybox tar unshare; do
	command -v $t >/dev/null || { echo "bench/engine.sh: $t is missing" >&2; exit 1; }
done
W=$(mktemp -d /tmp/capsa-bench-engine.XXXXXX)
CG=/capsa-bench-engine-$$
cleanup() {
	"$CAPSA" --root "$W/capsa" --state "$W/state" ps -aq 2>/dev/null |
		xargs -r "$CAPSA" --root "$W/capsa" --state "$W/state" rm -f >/dev/null 2>&1 || true
	podman --root "$W/podman" --runroot "$W/podman-run" rmi -af >/dev/null 2>&1 || true
	grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$W"
	# The containers' parent cgroup (each container removed its own).
	for d in /sys/fs/cgroup$CG /sys/fs/cgroup/*$CG; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
	true
}
trap cleanup EXIT

# A busybox-static rootfs as a tarball.
R=$W/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp"
cp "$(command -v busybox)" "$R/bin/busybox"
for a in sh true cat ls echo; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
tar -C "$R" -cf "$W/rootfs.tar" .

C="$CAPSA --root $W/capsa --state $W/state"
P="podman --root $W/podman --runroot $W/podman-run"
$C import "$W/rootfs.tar" bench:1 >/dev/null
$P import "$W/rootfs.tar" localhost/bench:1 >/dev/null
NS="unshare -m --propagation private sh -c"
PREP="umount /sys/fs/cgroup/unified 2>/dev/null || true"
U="--ulimit nofile=1024:1024 --ulimit nproc=4096:4096"

echo "== run --rm IMAGE true ($RUNS runs each; $(nproc) cores, kernel $(uname -r))"
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$W/run.json" \
	-n capsa "$NS '$PREP; $C run --rm --network none --cgroup-parent $CG bench:1 true'" \
	-n "capsa (unconfined)" "$NS '$PREP; $C run --rm --network none --cgroup-parent $CG --security-opt seccomp=unconfined bench:1 true'" \
	-n podman "$NS '$PREP; $P run --rm --network none $U localhost/bench:1 true'"

# A multi-layer OCI layout: 8 layers, each a few hundred files, written by hand.
L=$W/layout
mkdir -p "$L/blobs/sha256"
diffs=""; descs=""
i=0
while [ $i -lt 8 ]; do
	d=$W/l$i; mkdir -p "$d/layer$i"
	if [ $i -eq 0 ]; then cp -a "$R/." "$d/"; fi
	j=0; while [ $j -lt 300 ]; do echo "file $i $j" > "$d/layer$i/f$j"; j=$((j+1)); done
	tar --numeric-owner -C "$d" -cf "$W/t" .
	h=$(sha256sum "$W/t" | cut -d' ' -f1); s=$(stat -c %s "$W/t"); mv "$W/t" "$L/blobs/sha256/$h"
	diffs="$diffs${diffs:+,}\"sha256:$h\""
	descs="$descs${descs:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$h\",\"size\":$s}"
	i=$((i+1))
done
blob() { printf '%s' "$1" > "$W/t"; h=$(sha256sum "$W/t" | cut -d' ' -f1); s=$(stat -c %s "$W/t"); mv "$W/t" "$L/blobs/sha256/$h"; echo "$h $s"; }
set -- $(blob "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"true\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$diffs]}}")
ch=$1 cs=$2
set -- $(blob "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$ch\",\"size\":$cs},\"layers\":[$descs]}")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"multi"}}]}' "$1" "$2" > "$L/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$L/oci-layout"

echo "== unpack an 8-layer OCI layout into a runnable rootfs ($RUNS runs each)"
U2="$CAPSA --root $W/u --state $W/ustate"
# The layout's ref name is a bare tag, which capsa (as Docker) loads without a name: use the id.
printf '#!/bin/sh\nset -e\nid=$(%s load -i %s | sed -n "s/.*ID: //p")\n%s create "$id" true >/dev/null\n' \
	"$U2" "$L" "$U2" > "$W/capsa-unpack.sh"
chmod +x "$W/capsa-unpack.sh"
hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$W/unpack.json" \
	--prepare "sh -c '$U2 ps -aq 2>/dev/null | xargs -r $U2 rm -f >/dev/null 2>&1; rm -rf $W/u $W/ustate $W/bundle'" \
	-n "capsa load+create" "$W/capsa-unpack.sh" \
	-n "umoci unpack" "umoci unpack --image $L:multi $W/bundle"
$U2 ps -aq | xargs -r $U2 rm -f >/dev/null

ratio() {
	python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
m = {x["command"]: x["median"] for x in r}
*ours, peer = list(m)
for a in ours:
    print(f"  median {a} {m[a]*1000:.1f} ms, {peer} {m[peer]*1000:.1f} ms, ratio {m[a]/m[peer]:.3f}")
PY
}
echo "== ratios (capsa / peer)"
ratio "$W/run.json"
ratio "$W/unpack.json"
