//! capsa's default seccomp profile: what every container of `capsa run`/`create` and capsad
//! gets unless `--security-opt seccomp=…` or `--privileged` says otherwise.
//!
//! Its effect is Docker's default profile (the one users' images are tested under): an allow
//! list, EPERM for everything else, the capability-conditional groups dockerd adds when a
//! container has the capability, and the argument filters (`clone` without namespace flags,
//! `personality` to its harmless values, no AF_VSOCK sockets). The data is kept here as groups,
//! each saying why it is there, and rendered into Docker's profile format, so the one converter
//! in [`super::seccomp_profile`] turns it and a user's profile into the OCI `linux.seccomp` the
//! same way (by capabilities, architecture and kernel). The runtime answers ENOSYS for calls
//! newer than the profile (runc's stub), so a newer libc falls back instead of failing.
//!
//! `tests/e2e/seccomp_default.rs` checks the effect syscall by syscall against dockerd.

use serde_json::{Value, json};

/// Allowed for every container: the calls ordinary programs make, none of which reaches past
/// the container's namespaces or needs a capability Docker does not grant.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed from kernel 4.8, where seccomp is checked again after a tracer changes a call (before
/// that, ptrace could rewrite a call past the filter).
const ALLOWED_FROM_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// `personality` values that change nothing dangerous: PER_LINUX, PER_LINUX32, UNAME26 (and
/// with PER_LINUX32), and the query. ADDR_NO_RANDOMIZE and friends stay refused.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// AF_VSOCK: sockets to the hypervisor or other VMs, which no network namespace contains.
const AF_VSOCK: u64 = 40;

/// `clone` flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
/// NEWPID, NEWNET): without CAP_SYS_ADMIN a container may clone, but not into new namespaces.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Calls allowed only on some architectures (Go's names, as Docker's profiles use).
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "386"], &["modify_ldt"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
];

/// Calls a capability makes safe: dockerd allows them when the container has it, as the
/// kernel then allows what they do.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_DAC_READ_SEARCH",
        &["name_to_handle_at", "open_by_handle_at"],
    ),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// The profile in Docker's format (`archMap`, rules with `includes`/`excludes`), for
/// [`super::seccomp_profile::convert`].
/// Names this libseccomp knows: a call newer than it cannot be filtered by number, so it is left
/// out (runc drops such names the same way) and the runtime's ENOSYS stub answers it.
fn known<'a>(names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|name| libseccomp::ScmpSyscall::from_name(name).is_ok())
        .collect()
}

/// Built once per process (every name goes through libseccomp): a daemon's creates and a
/// monitor's restarts only convert it for their capabilities.
pub(crate) fn profile() -> &'static Value {
    static PROFILE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    PROFILE.get_or_init(build)
}

fn build() -> Value {
    let allow = |names: &[&str]| json!({ "names": known(names), "action": "SCMP_ACT_ALLOW" });
    let mut rules = vec![allow(ALLOWED)];
    let mut newer = allow(ALLOWED_FROM_4_8);
    newer["includes"] = json!({ "minKernel": "4.8" });
    rules.push(newer);
    for value in PERSONALITIES {
        let mut rule = allow(&["personality"]);
        rule["args"] = json!([{ "index": 0, "value": value, "op": "SCMP_CMP_EQ" }]);
        rules.push(rule);
    }
    let mut socket = allow(&["socket"]);
    socket["args"] = json!([{ "index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE" }]);
    rules.push(socket);
    for (arches, names) in BY_ARCH {
        let mut rule = allow(names);
        rule["includes"] = json!({ "arches": arches });
        rules.push(rule);
    }
    for (cap, names) in BY_CAPABILITY {
        let mut rule = allow(names);
        rule["includes"] = json!({ "caps": [cap] });
        rules.push(rule);
    }
    // Without CAP_SYS_ADMIN: clone without namespace flags (s390 has its flags in the second
    // argument), and clone3, whose flags seccomp cannot see, answers ENOSYS so libc falls back
    // to clone.
    let mut clone = allow(&["clone"]);
    clone["args"] = json!([{
        "index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"
    }]);
    clone["excludes"] = json!({ "caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"] });
    rules.push(clone);
    let mut clone_s390 = allow(&["clone"]);
    clone_s390["args"] = json!([{
        "index": 1, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"
    }]);
    clone_s390["includes"] = json!({ "arches": ["s390", "s390x"] });
    clone_s390["excludes"] = json!({ "caps": ["CAP_SYS_ADMIN"] });
    rules.push(clone_s390);
    rules.push(json!({
        "names": ["clone3"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": libc::ENOSYS,
        "excludes": { "caps": ["CAP_SYS_ADMIN"] }
    }));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "archMap": [
            { "architecture": "SCMP_ARCH_X86_64",
              "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] },
            { "architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"] },
            { "architecture": "SCMP_ARCH_MIPS64",
              "subArchitectures": ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"] },
            { "architecture": "SCMP_ARCH_PPC64LE",
              "subArchitectures": ["SCMP_ARCH_PPC64", "SCMP_ARCH_PPC"] },
            { "architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"] },
            { "architecture": "SCMP_ARCH_RISCV64", "subArchitectures": [] }
        ],
        "syscalls": rules
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_call_is_listed_twice_in_the_allow_list() {
        let mut names = ALLOWED.to_vec();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn names_libseccomp_does_not_know_are_left_out() {
        let profile = profile();
        for rule in profile["syscalls"].as_array().expect("rules") {
            for name in rule["names"].as_array().expect("names") {
                let name = name.as_str().expect("a name");
                assert!(libseccomp::ScmpSyscall::from_name(name).is_ok(), "{name}");
            }
        }
        assert!(
            profile["syscalls"][0]["names"]
                .as_array()
                .expect("names")
                .len()
                > 300
        );
    }
}
