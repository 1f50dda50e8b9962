//! seccomp from `linux.seccomp`: denied calls fail with the configured errno while others work,
//! argument comparisons apply only when they match, an allow-list profile runs busybox, bad
//! profiles fail at create time, and the payload sees the same as under runc.

use anyhow::{Result, ensure};
use capsa_tests::bundle::Bundle;
use capsa_tests::context::{TestContext, path_str, skip};
use capsa_tests::probe::{Facts, Probe};
use capsa_tests::runtime::{RuntimeKind, which};
use serde_json::{Value, json};

/// Syscalls busybox `sh` and its applets use, plus what runc's Go init calls after loading the
/// filter (futex, signals, scheduling): a profile with defaultAction ERRNO needs them all.
const BUSYBOX_ALLOW_LIST: &[&str] = &[
    "access",
    "arch_prctl",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_gettime",
    "clock_nanosleep",
    "clone",
    "clone3",
    "close",
    "close_range",
    "dup",
    "dup2",
    "dup3",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_wait",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "fcntl",
    "fstat",
    "fstatfs",
    "fsync",
    "futex",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "getrusage",
    "gettid",
    "gettimeofday",
    "getuid",
    "ioctl",
    "kill",
    "lseek",
    "lstat",
    "madvise",
    "mmap",
    "mprotect",
    "mremap",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "prlimit64",
    "pselect6",
    "pwrite64",
    "read",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmsg",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_getaffinity",
    "sched_yield",
    "select",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_tid_address",
    "setgid",
    "setgroups",
    "setpgid",
    "setresgid",
    "setresuid",
    "setsid",
    "setuid",
    "sigaltstack",
    "stat",
    "statfs",
    "statx",
    "sysinfo",
    "tgkill",
    "tkill",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "vfork",
    "wait4",
    "waitid",
    "write",
    "writev",
];

/// A bundle whose config.json carries `seccomp` as `linux.seccomp`, running `probe`.
fn bundle_with(ctx: &TestContext, seccomp: Value, probe: &Probe) -> Result<Bundle> {
    let mut b = ctx.bundle()?;
    b.payload(&probe.script());
    let mut json = b.to_json()?;
    json["linux"]["seccomp"] = seccomp;
    b.write_json(&json)?;
    Ok(b)
}

/// Runs `probe` under `seccomp`; the run must succeed.
fn probe_with(ctx: &TestContext, seccomp: Value, probe: &Probe) -> Result<Facts> {
    let b = bundle_with(ctx, seccomp, probe)?;
    let out = ctx.run_written(&b)?.ok()?;
    Facts::parse(&out.stdout)
}

fn fails_with(facts: &Facts, fact: &str, message: &str) -> Result<()> {
    let f = facts.get(fact)?;
    ensure!(
        f.status != 0 && f.output.contains(message),
        "{fact} should fail with {message:?}, got status {}: {}",
        f.status,
        f.output
    );
    Ok(())
}

/// mkdir denied, with `errno_ret` (None: the default, EPERM).
fn deny_mkdir(errno_ret: Option<u32>) -> Value {
    let mut rule = json!({ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO" });
    if let Some(code) = errno_ret {
        rule["errnoRet"] = json!(code);
    }
    json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule] })
}

fn mkdir_probe() -> Probe {
    Probe::new()
        .fact("mkdir", "mkdir /tmp/x")
        .fact("touch", "touch /tmp/y && ls /tmp/y")
        .fact("seccomp", "grep '^Seccomp:' /proc/self/status")
}

#[test]
fn denied_syscall_fails_with_eperm_while_others_work() -> Result<()> {
    let ctx = TestContext::new("seccomp-eperm")?;
    let facts = probe_with(&ctx, deny_mkdir(None), &mkdir_probe())?;
    fails_with(&facts, "mkdir", "Operation not permitted")?;
    ensure!(facts.ok("touch")?.contains("/tmp/y"), "touch: {facts:?}");
    let mode = facts.ok("seccomp")?;
    ensure!(
        mode.contains('2'),
        "the payload is not in filter mode: {mode}"
    );
    Ok(())
}

#[test]
fn profile_applies_without_no_new_privileges() -> Result<()> {
    // Without no_new_privs the filter is loaded before the capabilities are dropped.
    let ctx = TestContext::new("seccomp-nnp-off")?;
    let mut b = ctx.bundle()?;
    b.payload(&mkdir_probe().script());
    b.process().set_no_new_privileges(Some(false));
    let mut json = b.to_json()?;
    json["linux"]["seccomp"] = deny_mkdir(None);
    b.write_json(&json)?;
    let facts = Facts::parse(&ctx.run_written(&b)?.ok()?.stdout)?;
    fails_with(&facts, "mkdir", "Operation not permitted")?;
    ensure!(facts.ok("touch")?.contains("/tmp/y"), "touch: {facts:?}");
    Ok(())
}

#[test]
fn errno_ret_is_what_the_denied_call_returns() -> Result<()> {
    let ctx = TestContext::new("seccomp-errnoret")?;
    let facts = probe_with(&ctx, deny_mkdir(Some(libc::EACCES as u32)), &mkdir_probe())?;
    fails_with(&facts, "mkdir", "Permission denied")?;
    ensure!(facts.ok("touch")?.contains("/tmp/y"), "touch: {facts:?}");
    Ok(())
}

/// chmod to 0777 denied (EQ on the mode argument: arg1 of chmod, arg2 of fchmodat), and to 0700
/// or 0711 (the same index compared twice in one rule: runc makes one rule per comparison, so
/// they are ORed).
fn chmod_profile() -> Value {
    let eq = |index: u32, mode: u32| json!({ "index": index, "value": mode, "op": "SCMP_CMP_EQ" });
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [eq(1, 0o777)] },
            { "names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "args": [eq(2, 0o777)] },
            { "names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
              "args": [eq(1, 0o700), eq(1, 0o711)] },
            { "names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
              "args": [eq(2, 0o700), eq(2, 0o711)] },
            // MASKED_EQ: deny a mode with the setuid bit (value is the mask, valueTwo the value).
            { "names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
              "args": [{ "index": 1, "value": 0o4000, "valueTwo": 0o4000, "op": "SCMP_CMP_MASKED_EQ" }] },
            { "names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
              "args": [{ "index": 2, "value": 0o4000, "valueTwo": 0o4000, "op": "SCMP_CMP_MASKED_EQ" }] }
        ]
    })
}

fn chmod_probe() -> Probe {
    let mut probe = Probe::new().fact("touch", "touch /tmp/f");
    for mode in ["755", "777", "700", "711", "4755", "644"] {
        probe = probe.fact(
            &format!("chmod{mode}"),
            &format!("chmod {mode} /tmp/f && stat -c %a /tmp/f"),
        );
    }
    probe
}

#[test]
fn argument_comparison_applies_only_when_it_matches() -> Result<()> {
    let ctx = TestContext::new("seccomp-args")?;
    let facts = probe_with(&ctx, chmod_profile(), &chmod_probe())?;
    ensure!(facts.ok("chmod755")?.trim() == "755", "{facts:?}");
    ensure!(facts.ok("chmod644")?.trim() == "644", "{facts:?}");
    fails_with(&facts, "chmod777", "Operation not permitted")?;
    fails_with(&facts, "chmod700", "Permission denied")?;
    fails_with(&facts, "chmod711", "Permission denied")?;
    fails_with(&facts, "chmod4755", "Operation not permitted")?;
    Ok(())
}

#[test]
fn default_errno_with_an_allow_list_runs_busybox() -> Result<()> {
    let ctx = TestContext::new("seccomp-allowlist")?;
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::ENOSYS,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{ "names": BUSYBOX_ALLOW_LIST, "action": "SCMP_ACT_ALLOW" }]
    });
    let probe = Probe::new()
        .fact("echo", "echo hello from the allow-list")
        .fact("ls", "ls /bin/sh")
        .fact("mkdir", "mkdir /tmp/x");
    let facts = probe_with(&ctx, profile, &probe)?;
    ensure!(
        facts.ok("echo")?.contains("hello from the allow-list"),
        "{facts:?}"
    );
    ensure!(facts.ok("ls")?.contains("/bin/sh"), "{facts:?}");
    // mkdir is not on the list: the default errno (ENOSYS).
    fails_with(&facts, "mkdir", "not implemented")?;
    Ok(())
}

#[test]
fn log_trap_and_kill_actions_do_what_they_say() -> Result<()> {
    let ctx = TestContext::new("seccomp-actions")?;
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["uname"], "action": "SCMP_ACT_LOG" },
            { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS" },
            { "names": ["rmdir"], "action": "SCMP_ACT_TRAP" },
            { "names": ["acct"], "action": "SCMP_ACT_KILL" },
            { "names": ["swapon"], "action": "SCMP_ACT_KILL_THREAD" },
            { "names": ["vhangup"], "action": "SCMP_ACT_TRACE", "errnoRet": 5 }
        ]
    });
    let probe = Probe::new()
        .fact("uname", "uname -s")
        .fact("mkdir", "mkdir /tmp/x")
        .fact("rmdir", "rmdir /tmp");
    let facts = probe_with(&ctx, profile, &probe)?;
    ensure!(
        facts.ok("uname")?.contains("Linux"),
        "LOG allows: {facts:?}"
    );
    // KILL_PROCESS and TRAP (SIGSYS, not handled) end the command; sh reports 128+31.
    for fact in ["mkdir", "rmdir"] {
        let f = facts.get(fact)?;
        ensure!(
            f.status == 128 + libc::SIGSYS,
            "{fact} should die of SIGSYS: {f:?}"
        );
    }
    Ok(())
}

#[test]
fn filter_flags_are_accepted() -> Result<()> {
    let ctx = TestContext::new("seccomp-flags")?;
    if ctx.runtime.is_runc() {
        return skip(
            "filter_flags_are_accepted",
            "runc 1.1 refuses every seccomp flag",
        );
    }
    let mut profile = deny_mkdir(None);
    profile["flags"] = json!([
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
    ]);
    let facts = probe_with(&ctx, profile, &mkdir_probe())?;
    fails_with(&facts, "mkdir", "Operation not permitted")
}

/// `create` of `b` must fail naming `keyword`, leaving nothing behind.
fn create_fails_naming(ctx: &TestContext, b: &Bundle, keyword: &str) -> Result<()> {
    let id = ctx.new_id();
    let out = ctx
        .rt(&["create", "--bundle", path_str(&b.dir)?, &id])?
        .failed()?;
    ensure!(
        out.stderr.contains(keyword),
        "stderr should name {keyword:?}: {out}"
    );
    ctx.assert_nothing_left(&id, b)
}

#[test]
fn unknown_syscall_name_fails_create_naming_it() -> Result<()> {
    let ctx = TestContext::new("seccomp-unknown")?;
    if ctx.runtime.is_runc() {
        return skip(
            "unknown_syscall_name_fails_create_naming_it",
            "runc ignores syscall names libseccomp does not know",
        );
    }
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getpid", "no_such_syscall"], "action": "SCMP_ACT_ERRNO" }]
    });
    let b = bundle_with(&ctx, profile, &Probe::new().fact("true", "true"))?;
    create_fails_naming(&ctx, &b, "no_such_syscall")
}

#[test]
fn syscall_known_only_on_another_architecture_is_skipped() -> Result<()> {
    let ctx = TestContext::new("seccomp-otherarch")?;
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["arm_fadvise64_64", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO" }]
    });
    let facts = probe_with(&ctx, profile, &mkdir_probe())?;
    fails_with(&facts, "mkdir", "Operation not permitted")
}

#[test]
fn unknown_flag_fails_create_naming_it() -> Result<()> {
    let ctx = TestContext::new("seccomp-badflag")?;
    if ctx.runtime.is_runc() {
        return skip(
            "unknown_flag_fails_create_naming_it",
            "runc 1.1 reports unknown seccomp flags in its own words",
        );
    }
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_BOGUS"],
    });
    let b = bundle_with(&ctx, profile, &Probe::new().fact("true", "true"))?;
    create_fails_naming(&ctx, &b, "SECCOMP_FILTER_FLAG_BOGUS")
}

#[test]
fn argument_index_above_five_fails_create() -> Result<()> {
    let ctx = TestContext::new("seccomp-badindex")?;
    if ctx.runtime.is_runc() {
        return skip(
            "argument_index_above_five_fails_create",
            "runc reports it in its own words",
        );
    }
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["chmod"], "action": "SCMP_ACT_ERRNO",
                       "args": [{ "index": 6, "value": 1, "op": "SCMP_CMP_EQ" }] }]
    });
    let b = bundle_with(&ctx, profile, &Probe::new().fact("true", "true"))?;
    create_fails_naming(&ctx, &b, "argument index 6")
}

/// The same profile and probe under runc and under the runtime under test give the payload the
/// same results, fact by fact.
#[test]
fn seccomp_profile_results_are_the_same_as_under_runc() -> Result<()> {
    let test = "seccomp_profile_results_are_the_same_as_under_runc";
    if which("runc").is_none() {
        return skip(test, "runc is not installed");
    }
    let mut profile = chmod_profile();
    profile["syscalls"]
        .as_array_mut()
        .expect("syscalls")
        .push(json!({ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 }));
    let mut probe = chmod_probe();
    for (name, command) in [
        ("mkdir", "mkdir /tmp/x"),
        (
            "seccomp",
            "grep -E '^(Seccomp|NoNewPrivs)' /proc/self/status",
        ),
        ("echo", "echo still here"),
    ] {
        probe = probe.fact(name, command);
    }
    let view = |kind: RuntimeKind| -> Result<Facts> {
        let ctx = TestContext::with_runtime(&format!("seccomp-diff-{}", kind.name()), kind)?;
        probe_with(&ctx, profile.clone(), &probe)
    };
    let reference = view(RuntimeKind::Runc)?;
    let subject = RuntimeKind::from_env()?;
    let seen = view(subject)?;
    let mut diffs = Vec::new();
    for name in reference.names() {
        let want = reference.get(name)?;
        match seen.get(name) {
            Ok(got) if got == want => {}
            got => diffs.push(format!(
                "fact {name}: runc {want:?}, {} {got:?}",
                subject.name()
            )),
        }
    }
    ensure!(
        diffs.is_empty(),
        "the payload's results differ from runc's:\n{}",
        diffs.join("\n")
    );
    Ok(())
}
