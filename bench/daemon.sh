#!/bin/sh
# bench/daemon.sh: capsad against Debian's dockerd (and podman's Docker-compatible service), the
# same docker CLI (the machine's, 28.x) driving each, side by side (shared/BENCHMARKS.md):
#
#   1. `docker run --rm --network none IMAGE true`        (hyperfine, RUNS runs each)
#   2. `docker ps -a` with 100 running containers          (hyperfine)
#   3. the daemon's idle RSS with 0 and with 20 running containers (and its helpers': capsa's
#      monitors; dockerd's containerd and shims)
#
# Every daemon gets a data root, exec root, socket and pidfile under this script's temp dir and
# is stopped by pid at the end; dockerd runs with --iptables=false --bridge=none. The same
# busybox-static image is loaded into each.
#
# Usage (as root): bench/daemon.sh [RUNS]
#   env: CAPSA_BIN_DIR (default target/release, built if missing), SKIP_PODMAN=1
set -eu
RUNS=${1:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CAPSA_BIN_DIR:-$here/target/release}
if [ ! -x "$BIN/capsad" ] || [ ! -x "$BIN/capsa-monitor" ]; then
	(cd "$here" && cargo build --release -p capsad -p capsa-host --bins)
fi
for t in hyperfine docker dockerd tar busybox; do
	command -v $t >/dev/null || { echo "bench/daemon.sh: $t is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
DOCKERD=$(command -v dockerd)
W=$(mktemp -d /tmp/capsa-bench-daemon.XXXXXX)
CG=/capsa-bench-daemon-$$
OUT=$here/bench/out/daemon
mkdir -p "$OUT"

stop_pidfile() {
	[ -f "$1" ] || return 0
	pid=$(cat "$1")
	kill "$pid" 2>/dev/null || true
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
	for s in capsa docker podman; do
		[ -S "$W/$s.sock" ] || continue
		DOCKER_HOST=unix://$W/$s.sock docker ps -aq 2>/dev/null |
			xargs -r env DOCKER_HOST=unix://$W/$s.sock docker rm -f >/dev/null 2>&1 || true
	done
	stop_pidfile "$W/capsad.pid"
	stop_pidfile "$W/dockerd.pid"
	stop_pidfile "$W/podman.pid"
	grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	# The containers' parent cgroups (capsad's and dockerd's; each container removed its own).
	for d in /sys/fs/cgroup$CG /sys/fs/cgroup/*$CG /sys/fs/cgroup$CG-docker /sys/fs/cgroup/*$CG-docker; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null
	done
	rm -rf "$W"
	true
}
trap cleanup EXIT INT TERM

# The image: busybox-static as a one-layer docker-save archive, made by capsa's own CLI.
R=$W/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp"
cp "$(command -v busybox)" "$R/bin/busybox"
for a in sh true cat ls echo sleep; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
tar -C "$R" -cf "$W/rootfs.tar" .
"$BIN/capsa" --root "$W/img-root" --state "$W/img-state" import "$W/rootfs.tar" bench:1 >/dev/null
"$BIN/capsa" --root "$W/img-root" --state "$W/img-state" save -o "$W/bench.tar" bench:1

wait_socket() {
	i=0
	until DOCKER_HOST=unix://$1 docker version >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -gt 300 ] && { echo "bench/daemon.sh: $2 did not come up (log: $3)" >&2; tail -20 "$3" >&2; return 1; }
		sleep 0.1
	done
}

# capsad.
"$BIN/capsad" --data-root "$W/capsa" --exec-root "$W/capsa-exec" -H "unix://$W/capsa.sock" \
	--pidfile "$W/capsad.pid" --cgroup-parent "$CG" >"$W/capsad.log" 2>&1 &
wait_socket "$W/capsa.sock" capsad "$W/capsad.log"
# dockerd, with its own containerd, and its trust key and (empty) config in the bench's dir: by
# default it writes /etc/docker/key.json and reads /etc/docker/daemon.json.
printf '{"deprecated-key-path": "%s/key.json"}\n' "$W" > "$W/daemon.json"
"$DOCKERD" --config-file "$W/daemon.json" --data-root "$W/docker" --exec-root "$W/docker-exec" -H "unix://$W/docker.sock" \
	--pidfile "$W/dockerd.pid" --iptables=false --ip6tables=false --bridge=none \
	--default-ulimit nofile=1024:1024 --cgroup-parent "$CG-docker" \
	--containerd-namespace capsa-bench --containerd-plugins-namespace capsa-bench-plugins \
	>"$W/dockerd.log" 2>&1 &
wait_socket "$W/docker.sock" dockerd "$W/dockerd.log"
DAEMONS="capsa docker"
# podman's Docker-compatible service, when it runs here.
if [ "${SKIP_PODMAN:-0}" != 1 ] && command -v podman >/dev/null; then
	podman --root "$W/podman" --runroot "$W/podman-run" system service --time=0 "unix://$W/podman.sock" \
		>"$W/podman.log" 2>&1 &
	echo $! > "$W/podman.pid"
	if wait_socket "$W/podman.sock" podman "$W/podman.log" 2>/dev/null; then
		DAEMONS="$DAEMONS podman"
	else
		echo "bench/daemon.sh: podman system service did not answer; skipped (log: $W/podman.log)"
	fi
fi

ready=""
for s in $DAEMONS; do
	DOCKER_HOST=unix://$W/$s.sock docker load -q -i "$W/bench.tar" >/dev/null
	# One run each first: a daemon that cannot run the image is reported, not measured (capsad
	# and dockerd must run it; the optional podman service is skipped).
	if DOCKER_HOST=unix://$W/$s.sock docker run --rm --network none --ulimit nofile=1024:1024 bench:1 true 2>"$W/$s.first"; then
		ready="$ready $s"
	elif [ "$s" = podman ]; then
		echo "bench/daemon.sh: podman's service cannot do docker run here ($(cat "$W/$s.first")); skipped"
	else
		echo "bench/daemon.sh: $s cannot run the image: $(cat "$W/$s.first")" >&2
		exit 1
	fi
done
DAEMONS=$ready

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
sum_rss() { t=0; for p in "$@"; do t=$((t + $(rss_kb "$p"))); done; echo "$t"; }
children_of() { ps -e -o pid=,ppid=,comm= | awk -v p="$1" '$2 == p {print $1}'; }
helpers() {
	case $1 in
	capsa) pgrep -f "capsa-monitor --root $W/capsa " || true ;;
	docker)
		c=$(pgrep -f "containerd --config $W/docker-exec" || pgrep -x containerd -P "$(cat "$W/dockerd.pid")" || true)
		echo "$c"
		pgrep -f "containerd-shim.*capsa-bench" || true ;;
	podman) pgrep -f "conmon.*$W/podman" || true ;;
	esac
}
daemon_pid() { cat "$W/${1}d.pid" 2>/dev/null || cat "$W/$1.pid"; }
report_rss() {
	label=$1
	for s in $DAEMONS; do
		case $s in capsa) pid=$(cat "$W/capsad.pid") ;; docker) pid=$(cat "$W/dockerd.pid") ;; podman) pid=$(cat "$W/podman.pid") ;; esac
		d=$(rss_kb "$pid")
		h=$(sum_rss $(helpers "$s"))
		n=$(helpers "$s" | grep -c . || true)
		printf '%-8s %-28s daemon %6d KiB   helpers (%3d) %7d KiB   total %7d KiB\n' "$s" "$label" "$d" "$n" "$h" $((d + h))
	done | tee -a "$OUT/rss.txt"
}

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024)" MiB"}' /proc/meminfo), kernel $(uname -r); docker CLI $(docker version --format '{{.Client.Version}}' 2>/dev/null)"
echo "== docker run --rm --network none IMAGE true ($RUNS runs each)"
args=""
for s in $DAEMONS; do
	args="$args -n $s 'env DOCKER_HOST=unix://$W/$s.sock docker run --rm --network none --ulimit nofile=1024:1024 bench:1 true'"
done
eval hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$OUT/run.json" $args

: > "$OUT/rss.txt"
sleep 2
report_rss "idle, 0 containers"
for s in $DAEMONS; do
	for i in $(seq 1 20); do
		DOCKER_HOST=unix://$W/$s.sock docker run -d --network none --ulimit nofile=1024:1024 --name idle$i bench:1 sleep 3600 >/dev/null
	done
done
sleep 3
report_rss "idle, 20 running containers"
for s in $DAEMONS; do
	for i in $(seq 21 100); do
		DOCKER_HOST=unix://$W/$s.sock docker run -d --network none --ulimit nofile=1024:1024 --name idle$i bench:1 sleep 3600 >/dev/null
	done
done
echo "== docker ps -a with 100 running containers ($RUNS runs each)"
args=""
for s in $DAEMONS; do
	args="$args -n $s 'env DOCKER_HOST=unix://$W/$s.sock docker ps -a -q'"
done
eval hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$OUT/ps.json" $args
report_rss "100 running containers"

# Ratios of medians, capsa / peer.
for f in run ps; do
	python3 - "$OUT/$f.json" "$f" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))["results"]
m = {r["command"]: sorted(r["times"])[len(r["times"]) // 2] * 1000 for r in d}
spread = {r["command"]: (r["min"] * 1000, r["max"] * 1000) for r in d}
line = ", ".join(f"{k} {v:.1f} ms (min {spread[k][0]:.1f}, max {spread[k][1]:.1f})" for k, v in m.items())
print(f"{sys.argv[2]}: medians {line}")
for peer in ("docker", "podman"):
    if peer in m and "capsa" in m:
        print(f"{sys.argv[2]}: capsa / {peer} = {m['capsa'] / m[peer]:.3f}")
EOF
done
echo "(hyperfine JSON and rss.txt in $OUT)"
