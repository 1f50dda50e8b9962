#!/usr/bin/env bash
# The pure cgroup v2 lane: runs capsa's end-to-end cgroup tests (and the lifecycle tests, as a
# smoke check) on a kernel whose only cgroup hierarchy is v2, whatever the host has. Runs as root.
#
# Boots Debian's kernel (linux-image-amd64) under qemu (software emulation: no KVM needed) with
# cgroup_no_v1=all. The VM's root is the host's / shared read-only over 9p under a tmpfs overlay,
# so the VM runs the very binaries built on the host (the e2e test executable, capsa-runtime,
# busybox) and cannot write to the host. The initramfs (busybox-static, the 9p/overlay modules and
# tests/vm/init) is built here on every run. See tests/vm/init for what happens inside.
#
# The lane fails unless the VM prints `CAPSA-VM-RESULT exit=0` and a libtest summary with at least
# one test run: a VM that does not boot, crashes or times out fails it, as does a failing test.
# Run scripts/test.sh (or cargo build --workspace --bins and cargo test --no-run) first.
#
# Environment:
#   CAPSA_SKIP_V2_LANE=1   skip the lane (says so loudly); CI never sets it
#   CAPSA_V2_FILTER        libtest filters and --skip options, space-separated (default below)
#   CAPSA_V2_KERNEL        the kernel image (default: the newest /boot/vmlinuz-*); its modules are
#                          taken from /lib/modules/<version in the file name>
#   CAPSA_V2_TIMEOUT       seconds the whole VM run may take (default: 900; the full lane takes about 540 s on a 2-core machine)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# The libtest filters: the cgroup tests, lifecycle, exec, seccomp, hooks and the spec-conformance
# tests, and the engine's tests (its
# containers' cgroups and overlay rootfs on Debian's own kernel, 6.1, older than the host's),
# except the two that need a network peer (a registry, podman's store) the VM does not set up;
# and four of the daemon's through the docker CLI (stats, top and limits read v2's files; restart
# policies and live restore are the monitor's).
FILTER=${CAPSA_V2_FILTER:-cgroup lifecycle:: exec:: seccomp:: conformance:: hooks:: engine:: confinement::privileged confinement::devices userns:: daemon::docker_cli_runs daemon::docker_run_flags daemon::restart_policies daemon::live_restore --skip engine::push_to_a_registry --skip engine::podman_saved}
# The controllers the VM must offer and enable at its root.
CONTROLLERS="cpuset cpu io memory hugetlb pids"
# Kernel modules the initramfs loads (with their dependencies) to mount the host's / as its root.
MODULES=(virtio_pci 9pnet_virtio 9p overlay)
TIMEOUT=${CAPSA_V2_TIMEOUT:-900}

say() { echo "v2-lane.sh: $*"; }
fail() {
    echo "v2-lane.sh: FAILED: $*" >&2
    exit 1
}

if [[ ${CAPSA_SKIP_V2_LANE:-} == 1 ]]; then
    echo "######################################################################"
    echo "v2-lane.sh: SKIPPED because CAPSA_SKIP_V2_LANE=1: the cgroup v2 tests did NOT run"
    echo "######################################################################"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    fail "must run as root"
fi

# The kernel and its modules.
if [[ -n ${CAPSA_V2_KERNEL:-} ]]; then
    kernel=$CAPSA_V2_KERNEL
else
    kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
    [[ -n $kernel ]] || fail "no /boot/vmlinuz-*: install linux-image-amd64 (scripts/install-deps.sh)"
fi
[[ -f $kernel ]] || fail "kernel $kernel does not exist"
kver=$(basename "$kernel")
kver=${kver#vmlinuz-}
[[ -d /lib/modules/$kver ]] || fail "no /lib/modules/$kver for kernel $kernel"

# The binaries under test: the e2e executable as cargo names it, capsa-runtime beside its profile.
# (`--workspace`, as nextest builds it in scripts/test.sh: with `-p capsa-tests` alone cargo would
# unify other features and build the whole test tree again.)
exe=$(cargo test --workspace --test e2e --no-run --message-format=json |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "e2e" and .profile.test)
           | .executable')
[[ -x $exe ]] || fail "cannot find the e2e test executable (cargo said: '$exe')"
runtime_bin=$(dirname "$(dirname "$exe")")/capsa-runtime
[[ -x $runtime_bin ]] || fail "no $runtime_bin: run cargo build --workspace --bins first"
# The binaries live in cargo's target directory, which is also shared on its own and mounted in
# the VM at the same path: a checkout under /tmp (hidden by the VM's fresh /tmp) works too.
target_dir=$(dirname "$(dirname "$(dirname "$exe")")")
[[ -d $target_dir ]] || fail "cannot find the target directory of $exe"

tmp=$(mktemp -d /tmp/capsa-v2-lane.XXXXXX)
# shellcheck disable=SC2317 # called by the trap
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

# The initramfs: busybox, the modules in load order, the init and its settings.
root=$tmp/initramfs
mkdir -p "$root"/{bin,dev,modules}
cp /bin/busybox "$root/bin/busybox"
mknod -m 600 "$root/dev/console" c 5 1
cp tests/vm/init "$root/init"
chmod 755 "$root/init"
mapfile -t kos < <(modprobe -S "$kver" --show-depends -a "${MODULES[@]}" |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }')
[[ ${#kos[@]} -gt 0 ]] || fail "modprobe found no modules for ${MODULES[*]} in /lib/modules/$kver"
for ko in "${kos[@]}"; do
    cp "$ko" "$root/modules/"
    basename "$ko" >>"$root/modules/order"
done
{
    printf 'TEST_EXE=%q\n' "$exe"
    printf 'RUNTIME_BIN=%q\n' "$runtime_bin"
    printf 'FILTER=%q\n' "$FILTER"
    printf 'TARGET_DIR=%q\n' "$target_dir"
    printf 'CONTROLLERS=%q\n' "$CONTROLLERS"
} >"$root/lane.env"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$tmp/initramfs.cpio"

say "booting $kernel (pure cgroup v2) under qemu, tests: $FILTER (timeout ${TIMEOUT}s)"
log=$tmp/serial.log
start=$SECONDS
qemu_status=0
# The serial console is the VM's stdout; shown live, and kept to be checked below. The kernel
# prints only critical messages (a panic), so that its messages do not cut libtest's lines.
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -nodefaults -display none -monitor none -serial stdio -no-reboot \
    -accel tcg -cpu max -smp 2 -m 2048 \
    -kernel "$kernel" -initrd "$tmp/initramfs.cpio" \
    -append "console=ttyS0 loglevel=3 panic=1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$target_dir,mount_tag=target,security_model=none,readonly=on,multidevs=remap" \
    </dev/null 2>&1 | sed -u 's/\r$//' | tee "$log" || qemu_status=$?
elapsed=$((SECONDS - start))

say "the VM ran for ${elapsed}s"
result=$(sed -n 's/^CAPSA-VM-RESULT exit=\([0-9][0-9]*\)$/\1/p' "$log" | tail -n 1)
summary=$(grep '^test result: ' "$log" | tail -n 1 || true)
grep '^CAPSA-VM: cgroup.controllers: ' "$log" || true
if [[ -z $result ]]; then
    fail "the VM reported no result: it did not boot, crashed or timed out (qemu/timeout exit status $qemu_status; timeout ${TIMEOUT}s)"
fi
say "libtest in the VM: ${summary:-<no summary line>}"
if [[ $result -ne 0 ]]; then
    # libtest's last `failures:` block lists the failed tests by name.
    awk '/^failures:$/ { names = ""; grab = 1; next }
         /^test result: / { grab = 0 }
         grab && /^    / { names = names $0 "\n" }
         END { if (names != "") printf "v2-lane.sh: failed in the VM:\n%s", names }' "$log"
    fail "the tests in the VM exited with status $result"
fi
passed=$(sed -n 's/.* \([0-9][0-9]*\) passed;.*/\1/p' <<<"$summary")
if [[ -z $passed || $passed -eq 0 ]]; then
    fail "no test ran in the VM (filter: $FILTER)"
fi
say "passed ($passed tests on pure cgroup v2, ${elapsed}s)"
