#!/bin/sh
# bench/network.sh: what bridge networking adds to a container's start, capsa against podman
# (both on netavark + aardvark-dns 1.4, Debian's), side by side on this machine (BENCHMARKS.md).
#
#   `run --rm IMAGE true` with --network none, on the default bridge, and on the default bridge
#   with two published ports (127.0.0.1, so the DNAT and localnet rules are made), for capsa
#   and podman. The network's share of each engine's start is its bridge run less its none run.
#   Two passes: back to back (a run's network setup waits for the previous run's teardown, which
#   capsa finishes after `run --rm` has returned and podman before: the throughput), and with
#   0.3 s between runs (hyperfine --prepare, for both engines: the latency a user waits for).
#   capsa's bridge stays up between runs (its keeper lingers 3 s after the last container, as
#   docker0 stays; podman's netavark makes and removes podman0 with every run): that is the
#   design being measured, not a difference of conditions.
#
# Each engine has a store, a state dir and a bridge of this script's own (capsa: capsa-bench0
# on 10.233.0.0/24; podman: its default network, podman0, netavark backend, network configs
# under this script's dir). podman runs in a private mount namespace with the empty cgroup v2
# hierarchy unmounted (crun refuses the hybrid layout otherwise); capsa runs as its users run
# it, in the host's (a mount namespace that ends with each command would take the engine's
# bind mounts with it: the keeper's network namespace, so the bridge would go every run).
# Both go through one `sh -c`; what podman's unshare + umount costs is measured beside
# ("ns overhead") so it can be taken off podman's figures.
#
# Usage (as root): bench/network.sh [RUNS]    env: CAPSA_BIN (default target/release/capsa)
set -eu
RUNS=${1:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
CAPSA=${CAPSA_BIN:-$here/target/release/capsa}
if [ ! -x "$CAPSA" ]; then
	(cd "$here" && cargo build --release -p capsa-host --bin capsa)
fi
for t in hyperfine podman busybox tar unshare python3; do
	command -v $t >/dev/null || { echo "bench/network.sh: $t is missing" >&2; exit 1; }
done
[ -x /usr/lib/podman/netavark ] || { echo "bench/network.sh: netavark is missing (apt-get install netavark aardvark-dns)" >&2; exit 1; }
W=$(mktemp -d /tmp/capsa-bench-network.XXXXXX)
CG=/capsa-bench-network-$$
C="$CAPSA --root $W/capsa --state $W/state --bridge capsa-bench0 --bip 10.233.0.1/24"
P="podman --root $W/podman --runroot $W/podman-run --network-config-dir $W/podman-net"
cleanup() {
	sleep 1 # capsa finishes a run --rm teardown after the run returns
	$C ps -aq 2>/dev/null | xargs -r $C rm -f >/dev/null 2>&1 || true
	$C network prune -f >/dev/null 2>&1 || true # the default bridge's keeper, without its linger
	$P rm -af >/dev/null 2>&1 || true
	$P rmi -af >/dev/null 2>&1 || true
	grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$W"
	for d in /sys/fs/cgroup$CG /sys/fs/cgroup/*$CG; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
	true
}
trap cleanup EXIT

R=$W/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp"
cp "$(command -v busybox)" "$R/bin/busybox"
for a in sh true cat ls echo; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
tar -C "$R" -cf "$W/rootfs.tar" .
mkdir -p "$W/podman-net"
$C import "$W/rootfs.tar" bench:1 >/dev/null
$P import "$W/rootfs.tar" localhost/bench:1 >/dev/null
NS="unshare -m --propagation private sh -c"
PREP="umount /sys/fs/cgroup/unified 2>/dev/null || true"
U="--ulimit nofile=1024:1024 --ulimit nproc=4096:4096"
PORTS="-p 127.0.0.1:18781:80 -p 127.0.0.1:18782:81"
# Each engine's network works before anything is measured.
sh -c "$C run --rm --network bridge $PORTS --cgroup-parent $CG bench:1 true"
$NS "$PREP; $P run --rm --network bridge $PORTS $U localhost/bench:1 true"

measure() { # NAME [hyperfine options]
	name=$1; shift
	echo "== run --rm IMAGE true, $name: none, bridge, bridge + 2 ports ($RUNS runs each; $(nproc) cores, kernel $(uname -r))"
	echo "   load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$W/$name.json" "$@" \
	-n "capsa none" "sh -c '$C run --rm --network none --cgroup-parent $CG bench:1 true'" \
	-n "capsa bridge" "sh -c '$C run --rm --network bridge --cgroup-parent $CG bench:1 true'" \
	-n "capsa bridge+2p" "sh -c '$C run --rm --network bridge $PORTS --cgroup-parent $CG bench:1 true'" \
	-n "podman none" "$NS '$PREP; $P run --rm --network none $U localhost/bench:1 true'" \
	-n "podman bridge" "$NS '$PREP; $P run --rm --network bridge $U localhost/bench:1 true'" \
	-n "podman bridge+2p" "$NS '$PREP; $P run --rm --network bridge $PORTS $U localhost/bench:1 true'" \
	-n "ns overhead" "$NS '$PREP; true'" \
	-n "sh overhead" "sh -c 'true'"
	report "$W/$name.json" "$name"
}

report() {
python3 - "$1" "$2" <<'PY'
import json, sys
m = {r["command"]: r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"]}
print(f"== {sys.argv[2]}: medians (ms) and ratios (capsa / podman)")
for kind in ["none", "bridge", "bridge+2p"]:
    c, p = m[f"capsa {kind}"], m[f"podman {kind}"]
    print(f"  {kind:10} capsa {c:7.1f}  podman {p:7.1f}  ratio {c / p:.3f}")
ns = m["ns overhead"] - m["sh overhead"]
print(f"  podman's private mount namespace costs {ns:.1f} ms; without it the ratios would be " + ", ".join(f"{k} {m[f'capsa {k}'] / (m[f'podman {k}'] - ns):.3f}" for k in ["none", "bridge", "bridge+2p"]))
for e in ["capsa", "podman"]:
    share = m[f"{e} bridge"] - m[f"{e} none"]
    print(f"  {e}: the bridge adds {share:.1f} ms ({share / m[f'{e} bridge'] * 100:.0f}% of its bridge run); two ports add {m[f'{e} bridge+2p'] - m[f'{e} bridge']:.1f} ms more")
PY
}

# The network's own share of a capsa run: netavark's setup and teardown timed through a
# wrapper (CAPSA_NETAVARK), over RUNS back-to-back `run --rm --network bridge [+2 ports]`.
netavark_share() {
	cat > "$W/netavark-timed" <<EOF
#!/bin/sh
verb=""
for a in "\$@"; do case "\$a" in setup|teardown) verb=\$a;; esac; done
t0=\$(date +%s%N)
/usr/lib/podman/netavark "\$@"
rc=\$?
echo "\$verb \$t0 \$(date +%s%N)" >> "$W/netavark-times"
exit \$rc
EOF
	chmod +x "$W/netavark-timed"
	for kind in bridge bridge+2p; do
		ports=""
		[ "$kind" = bridge+2p ] && ports=$PORTS
		: > "$W/netavark-times"
		i=0
		while [ $i -lt "$RUNS" ]; do
			CAPSA_NETAVARK=$W/netavark-timed sh -c "$C run --rm --network bridge $ports --cgroup-parent $CG bench:1 true"
			i=$((i + 1))
		done
		sleep 0.5 # the last teardown, in the background
		python3 - "$W/netavark-times" "$kind" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for verb in ["setup", "teardown"]:
    ms = [(int(b) - int(a)) / 1e6 for v, a, b in rows if v == verb]
    if ms:
        print(f"  {sys.argv[2]:10} netavark {verb:8} median {statistics.median(ms):6.1f} ms over {len(ms)} calls")
PY
	done
}

measure back-to-back
measure spaced --prepare "sleep 0.3"
echo "== the network's share of a capsa run: netavark's calls, timed by a wrapper, $RUNS runs back to back"
echo "   (setup is on the run's path; teardown runs after run --rm has returned)"
netavark_share
