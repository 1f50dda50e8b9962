#!/usr/bin/env bash
# Installs every Debian package that capsa's build, tests, demo and benchmarks need.
#
# Idempotent, non-interactive and quiet: safe to run on every CI run and on a developer's machine.
# Runs as root on Debian 12 (bookworm). The Rust toolchain itself (rustup, cargo, cargo-nextest) is
# expected on the machine already; this script only deals with Debian's packages.
#
# No daemon is started: while apt runs, a policy-rc.d (unless the machine has one already) tells
# maintainer scripts not to start services, so installing containerd or docker-registry leaves
# nothing listening. The tests start their own containerd and registry, with their own state.
set -euo pipefail

# The one list. Keep it sorted by purpose; say who needs a package when it is not obvious.
PACKAGES=(
    # The peers capsa-runtime is compared with and driven by (tests and benchmarks).
    runc
    crun
    podman
    buildah                     # bench/build.sh's peer; the build tests' differential
    conmon                      # podman's container monitor
    catatonit                   # podman --init
    golang-github-containers-common # podman's default containers.conf, policy.json, seccomp.json
    containernetworking-plugins
    uidmap
    slirp4netns
    fuse-overlayfs
    iptables                    # netavark's firewall (iptables-nft)
    netavark                    # bridge networking: veth, bridge, NAT, published ports
    aardvark-dns                # DNS by container name on user networks (netavark starts it)
    containerd                  # also provides ctr and containerd-shim-runc-v2
    docker-registry             # the local registry the caller tests push to and pull from
    skopeo
    umoci
    # Root filesystems for test and benchmark bundles.
    busybox-static
    # Tools the scripts and tests call.
    hyperfine                   # bench/
    jq
    iproute2
    util-linux                  # unshare, mount, nsenter
    procps
    e2fsprogs
    xz-utils
    ca-certificates
    git
    # Building capsa: seccomp, bindgen, and the wasm test payloads.
    build-essential
    libseccomp-dev
    pkg-config
    clang-14
    lld-14
    wasi-libc
    libclang-rt-14-dev-wasm32
    # Booting a kernel under emulation (tests on a different cgroup layout): scripts/v2-lane.sh.
    qemu-system-x86
    linux-image-amd64           # the VM's kernel and its modules (9p, overlay)
    kmod                        # modprobe --show-depends: the modules' load order
    cpio                        # the VM's initramfs
    # The registry tests: htpasswd -B makes the registry's password file; their token server
    # (tests/python/token_server.py) runs on python3 (from python3-venv) and signs with openssl.
    apache2-utils
    # The daemon's tests and benchmark: real clients of Docker's Engine API (the docker CLI 28
    # is on the machine already), the benchmark's dockerd, TLS certificates, a terminal, curl
    # for raw requests, a venv for docker-py.
    docker-compose
    docker.io
    openssl
    tmux
    curl
    python3-venv
)

export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_MODE=a

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps.sh: must run as root" >&2
    exit 1
fi

log=$(mktemp /tmp/capsa-install-deps.XXXXXX.log)
policy=/usr/sbin/policy-rc.d
made_policy=0
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    if [[ $made_policy -eq 1 ]]; then
        rm -f "$policy"
    fi
    rm -f "$log"
}
trap cleanup EXIT

# Runs an apt-get command quietly; on failure prints what apt said and fails.
quiet_apt() {
    # Wait for another apt or dpkg to finish rather than fail on its lock.
    if ! apt-get -o DPkg::Lock::Timeout=300 "$@" >>"$log" 2>&1; then
        echo "install-deps.sh: apt-get $* failed:" >&2
        tail -n 60 "$log" >&2
        return 1
    fi
}

missing=()
for p in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) != installed ]]; then
        missing+=("$p")
    fi
done

# docker-py (PyPI `docker`) for the daemon's API-level tests, in a venv of the checkout's.
install_pyenv() {
    local venv="$repo/target/pyenv"
    if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import docker' 2>/dev/null; then
        return 0
    fi
    echo "install-deps.sh: python venv with docker-py at $venv"
    python3 -m venv "$venv" >>"$log" 2>&1 || /usr/bin/python3 -m venv "$venv" >>"$log" 2>&1
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'docker==7.1.0' >>"$log" 2>&1 || {
        echo "install-deps.sh: pip install docker failed:" >&2
        tail -n 30 "$log" >&2
        return 1
    }
}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

echo "install-deps.sh: apt-get update"
# A fresh machine may have no package lists at all; retry once on a transient failure.
quiet_apt update -q || { sleep 5; quiet_apt update -q; }

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps.sh: all ${#PACKAGES[@]} packages already installed"
    install_pyenv
    exit 0
fi

if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# Written by capsa scripts/install-deps.sh while it runs: start no services.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi

echo "install-deps.sh: installing ${#missing[@]} packages: ${missing[*]}"
apt_opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
quiet_apt install "${apt_opts[@]}" "${missing[@]}" || {
    sleep 5
    quiet_apt update -q
    quiet_apt install "${apt_opts[@]}" "${missing[@]}"
}
install_pyenv
echo "install-deps.sh: done"
