# shellcheck shell=bash
# Builds OCI bundles whose root filesystem is Debian's busybox-static, for the demo and the
# benchmarks. Sourced, not run. Needs busybox-static and jq (scripts/install-deps.sh).

# The static busybox every bundle uses.
CAPSA_BUSYBOX=${CAPSA_BUSYBOX:-/bin/busybox}

# make_busybox_rootfs DIR: DIR/ becomes a minimal root filesystem: /bin/busybox and one symlink
# per applet, plus the empty directories the runtime mounts over and an /etc with root's entries.
make_busybox_rootfs() {
    local rootfs=$1
    if ! file_is_static "$CAPSA_BUSYBOX"; then
        echo "bundle.sh: $CAPSA_BUSYBOX is not a static busybox (install busybox-static)" >&2
        return 1
    fi
    mkdir -p "$rootfs"/{bin,dev,etc,proc,sys,tmp,root}
    cp "$CAPSA_BUSYBOX" "$rootfs/bin/busybox"
    local applet
    for applet in $("$CAPSA_BUSYBOX" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
    done
    chmod 1777 "$rootfs/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
}

# file_is_static PATH: true if PATH is an executable that is not dynamically linked.
file_is_static() {
    [[ -x $1 ]] && ! ldd "$1" >/dev/null 2>&1
}

# write_busybox_config BUNDLE ARGS_JSON CGROUPS_PATH HOSTNAME: writes BUNDLE/config.json, the
# same spec `runc spec` prints (read-only root, the usual mounts, masked and read-only paths,
# three capabilities) with all default namespaces (pid, network, ipc, uts, mount, cgroup), no
# terminal, the given process arguments (a JSON array), cgroupsPath and hostname.
write_busybox_config() {
    local bundle=$1 args=$2 cgroups_path=$3 hostname=$4
    jq -n --argjson args "$args" --arg cgroups "$cgroups_path" --arg hostname "$hostname" '
    def caps: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    {
      ociVersion: "1.0.2",
      process: {
        terminal: false,
        user: {uid: 0, gid: 0},
        args: $args,
        env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        cwd: "/",
        capabilities: {bounding: caps, effective: caps, permitted: caps, ambient: caps},
        rlimits: [{type: "RLIMIT_NOFILE", hard: 1024, soft: 1024}],
        noNewPrivileges: true
      },
      root: {path: "rootfs", readonly: true},
      hostname: $hostname,
      mounts: [
        {destination: "/proc", type: "proc", source: "proc"},
        {destination: "/dev", type: "tmpfs", source: "tmpfs",
         options: ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {destination: "/dev/pts", type: "devpts", source: "devpts",
         options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {destination: "/dev/shm", type: "tmpfs", source: "shm",
         options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {destination: "/dev/mqueue", type: "mqueue", source: "mqueue",
         options: ["nosuid", "noexec", "nodev"]},
        {destination: "/sys", type: "sysfs", source: "sysfs",
         options: ["nosuid", "noexec", "nodev", "ro"]},
        {destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup",
         options: ["nosuid", "noexec", "nodev", "relatime", "ro"]}
      ],
      linux: {
        cgroupsPath: $cgroups,
        resources: {devices: [{allow: false, access: "rwm"}]},
        namespaces: [{type: "pid"}, {type: "network"}, {type: "ipc"}, {type: "uts"},
                     {type: "mount"}, {type: "cgroup"}],
        maskedPaths: ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                      "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                      "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
      }
    }' >"$bundle/config.json"
}

# remove_cgroup_everywhere PATH: removes the cgroup PATH (e.g. /capsa-bench-123) from every v1
# hierarchy and the v2 one, deepest first. Leaves alone any cgroup that still has processes.
remove_cgroup_everywhere() {
    local rel=${1#/} hierarchy
    [[ -n $rel ]] || return 0
    for hierarchy in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        [[ -d $hierarchy$rel ]] || continue
        find "$hierarchy$rel" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}
