#!/bin/sh
# bench/build.sh: `capsa build` against Debian's `buildah bud --layers` and, through Debian's
# dockerd, `DOCKER_BUILDKIT=0 docker build` (the classic builder), side by side on the same
# Dockerfile and context (shared/BENCHMARKS.md):
#
#   1. cold: every step run (`--no-cache`), 11 steps in two stages: ENV, WORKDIR, COPY of a
#      context of FILES small files, RUN, ARG, LABEL, then a second stage with COPY --from,
#      ENV, COPY of one file, CMD
#   2. rebuild after changing the one file only the last COPY uses (the steps before it cached)
#   3. rebuild with no change (every step cached)
#
# Each tool gets its own store under this script's temp dir (buildah --root/--runroot with
# chroot isolation; dockerd with its own data root, exec root, socket, pidfile, no iptables or
# bridge), and the same busybox-static base image. dockerd is stopped by pid at the end.
#
# Usage (as root): bench/build.sh [RUNS] [FILES]
#   env: CAPSA_BIN_DIR (default target/release, built if missing), SKIP_DOCKER=1, SKIP_BUILDAH=1
set -eu
RUNS=${1:-20}
FILES=${2:-3000}
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CAPSA_BIN_DIR:-$here/target/release}
if [ ! -x "$BIN/capsa" ] || [ ! -x "$BIN/capsa-monitor" ]; then
	(cd "$here" && cargo build --release -p capsa-host --bins)
fi
for t in hyperfine tar busybox python3; do
	command -v $t >/dev/null || { echo "bench/build.sh: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
W=$(mktemp -d /tmp/capsa-bench-build.XXXXXX)
CG=/capsa-bench-build-$$
OUT=$here/bench/out/build
mkdir -p "$OUT"
C="$BIN/capsa --root $W/capsa --state $W/capsa-state --bridge none"

stop_pidfile() {
	[ -f "$1" ] || return 0
	pid=$(cat "$1")
	kill "$pid" 2>/dev/null || true
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
	$C ps -aq 2>/dev/null | xargs -r $C rm -f >/dev/null 2>&1 || true
	stop_pidfile "$W/dockerd.pid"
	grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	for d in /sys/fs/cgroup$CG-docker /sys/fs/cgroup/*$CG-docker; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null
	done
	rm -rf "$W"
	true
}
trap cleanup EXIT INT TERM

# The base image: busybox-static, one layer, as a docker-save archive made by capsa.
R=$W/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp"
cp "$(command -v busybox)" "$R/bin/busybox"
for a in sh true cat ls echo mkdir; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
tar -C "$R" -cf "$W/rootfs.tar" .
$C import "$W/rootfs.tar" bench:1 >/dev/null
$C save -o "$W/bench.tar" bench:1

# The context: FILES small files in 30 directories, one file for the last COPY.
X=$W/ctx
mkdir -p "$X/files"
python3 - "$X/files" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i % 30}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "w") as f:
        f.write(f"file {i}\n" * 8)
EOF
echo v0 > "$X/app.txt"
cat > "$X/Dockerfile" <<'EOF'
FROM bench:1 AS base
ENV APP=/app
WORKDIR /app
COPY files/ /app/files/
RUN cat /app/files/d0/f0 > /made && echo built >> /made
ARG VERSION=1
LABEL version=$VERSION
FROM bench:1
COPY --from=base /made /made
ENV MODE=prod
COPY app.txt /app/app.txt
CMD ["cat", "/app/app.txt"]
EOF

TOOLS="capsa"
cmd_capsa="$C build -q -t out:1"
if [ "${SKIP_BUILDAH:-0}" != 1 ] && command -v buildah >/dev/null; then
	B="buildah --root $W/buildah --runroot $W/buildah-run --storage-driver overlay"
	$B pull -q "docker-archive:$W/bench.tar" >/dev/null
	$B tag "$($B images -q | head -1)" localhost/bench:1 bench:1 >/dev/null 2>&1 || true
	cmd_buildah="$B bud --layers --isolation chroot -q -t out:1"
	if $cmd_buildah "$X" >"$W/buildah.first" 2>&1; then
		TOOLS="$TOOLS buildah"
	else
		echo "bench/build.sh: buildah cannot build here ($(tail -3 "$W/buildah.first")); skipped"
	fi
fi
if [ "${SKIP_DOCKER:-0}" != 1 ] && command -v dockerd >/dev/null && command -v docker >/dev/null; then
	printf '{"deprecated-key-path": "%s/key.json"}\n' "$W" > "$W/daemon.json"
	dockerd --config-file "$W/daemon.json" --data-root "$W/docker" --exec-root "$W/docker-exec" \
		-H "unix://$W/docker.sock" --pidfile "$W/dockerd.pid" --iptables=false --ip6tables=false \
		--bridge=none --default-ulimit nofile=1024:1024 --cgroup-parent "$CG-docker" \
		--containerd-namespace capsa-bench --containerd-plugins-namespace capsa-bench-plugins \
		>"$W/dockerd.log" 2>&1 &
	i=0
	until DOCKER_HOST=unix://$W/docker.sock docker version >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -gt 300 ] && break
		sleep 0.1
	done
	export DOCKER_HOST=unix://$W/docker.sock
	docker load -q -i "$W/bench.tar" >/dev/null
	cmd_docker="env DOCKER_BUILDKIT=0 docker build -q --network none -t out:1"
	if $cmd_docker "$X" >"$W/docker.first" 2>&1; then
		TOOLS="$TOOLS docker"
	else
		echo "bench/build.sh: dockerd cannot build here ($(tail -3 "$W/docker.first")); skipped"
	fi
fi
# Warm every tool's cache once.
$cmd_capsa "$X" >/dev/null

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024)" MiB"}' /proc/meminfo), kernel $(uname -r); tools: $TOOLS; context: $FILES files"
run() {
	name=$1
	shift
	args=""
	for t in $TOOLS; do
		eval "c=\$cmd_$t"
		args="$args -n $t '$c $* $X'"
	done
	eval hyperfine -N --warmup 2 --runs "$RUNS" $PREPARE --export-json "$OUT/$name.json" $args
}
echo "== cold build (--no-cache, $RUNS runs each)"
PREPARE=""
run cold --no-cache
echo "== rebuild after changing the file only the last COPY uses ($RUNS runs each)"
PREPARE="--prepare 'sh -c \"date +%s%N > $X/app.txt\"'"
run changed
echo "== rebuild with no change ($RUNS runs each)"
PREPARE=""
run cached

for f in cold changed cached; do
	python3 - "$OUT/$f.json" "$f" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))["results"]
m = {r["command"]: sorted(r["times"])[len(r["times"]) // 2] * 1000 for r in d}
spread = {r["command"]: (r["min"] * 1000, r["max"] * 1000) for r in d}
print(f"{sys.argv[2]}: " + ", ".join(f"{k} {v:.0f} ms (min {spread[k][0]:.0f}, max {spread[k][1]:.0f})" for k, v in m.items()))
for peer in ("buildah", "docker"):
    if peer in m and "capsa" in m:
        print(f"{sys.argv[2]}: capsa / {peer} = {m['capsa'] / m[peer]:.3f}")
EOF
done
echo "(hyperfine JSON in $OUT)"
