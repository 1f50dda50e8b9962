//! seccomp from config.json's `linux.seccomp`, with runc's semantics. Three steps, kept apart so
//! the start path only pays for the last one:
//!
//! - [`check`] (from `spec::validate`, before anything exists): every syscall name is known to
//!   libseccomp, argument indexes are 0..=5, errno values fit, NOTIFY is usable.
//! - [`Filter::compile`] (in the init, before it reports `Ready`): libseccomp builds the filter and
//!   exports it as a BPF program.
//! - [`Filter::load`] (just before `execve`): one `seccomp(SECCOMP_SET_MODE_FILTER)` call, then,
//!   for `SCMP_ACT_NOTIFY`, the listener fd goes to the agent at `listenerPath` as runc sends it.
//!
//! Like runc, a name libseccomp knows but the filter's architectures lack is skipped, a rule whose
//! action equals the default action is dropped (libseccomp refuses it), and a rule that compares
//! the same argument twice becomes one rule per comparison (ORed, not ANDed). runc ignores names
//! libseccomp does not know; capsa refuses them, so a typo does not silently weaken a profile.

use std::io::{IoSlice, Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::error::{Context, Error, Result, invalid};

/// The syscall argument indexes seccomp can compare (a syscall has at most six arguments).
const MAX_ARG_INDEX: usize = 5;

// The seccomp(2) filter flags (linux/seccomp.h); libc does not export them all.
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1 << 0;
const SECCOMP_FILTER_FLAG_LOG: u32 = 1 << 1;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 1 << 2;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;
const SECCOMP_FILTER_FLAG_TSYNC_ESRCH: u32 = 1 << 4;
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// A filter compiled at create time, ready to load with one syscall.
#[derive(Debug)]
pub struct Filter {
    /// The BPF program libseccomp generated.
    program: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2), from `flags` (plus NEW_LISTENER for NOTIFY).
    flags: u32,
    /// Where the notify fd goes, when a rule uses SCMP_ACT_NOTIFY.
    listener: Option<Listener>,
}

/// The seccomp agent's socket (`listenerPath`), connected while the host's paths are still
/// visible (before pivot_root), and what it is sent along with the notify fd.
#[derive(Debug)]
struct Listener {
    path: String,
    metadata: String,
    socket: Option<UnixStream>,
    /// The OCI state (status "creating") the runtime sent; runc sends it the same way.
    state: Option<serde_json::Value>,
}

/// Checks `seccomp` without building anything: the config-time errors (an unknown syscall name,
/// an argument index above 5, an errno that does not fit, NOTIFY without a listener) come out
/// before the container's state, cgroup or process exist.
pub fn check(seccomp: &LinuxSeccomp) -> Result<()> {
    action(seccomp.default_action(), seccomp.default_errno_ret())
        .map_err(|e| invalid(format!("linux.seccomp.defaultAction: {e}")))?;
    if seccomp.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(invalid(
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action \
             (the init itself could not run)",
        ));
    }
    for arch in seccomp.architectures().iter().flatten() {
        scmp_arch(*arch);
    }
    let mut notifies = false;
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        action(rule.action(), rule.errno_ret()).map_err(|e| invalid(format!("{field}: {e}")))?;
        for name in rule.names() {
            syscall(name).map_err(|e| invalid(format!("{field}: {e}")))?;
        }
        for arg in rule.args().iter().flatten() {
            if arg.index() > MAX_ARG_INDEX {
                return Err(invalid(format!(
                    "{field}: argument index {} is out of range (a syscall has arguments 0 to {MAX_ARG_INDEX})",
                    arg.index()
                )));
            }
        }
        if rule.action() == LinuxSeccompAction::ScmpActNotify {
            notifies = true;
            // The init sends the notify fd with sendmsg right after loading the filter: a
            // notification on it would wait for an agent that has no fd yet.
            if let Some(name) = rule.names().iter().find(|n| *n == "sendmsg") {
                return Err(invalid(format!(
                    "{field}: SCMP_ACT_NOTIFY cannot be used for {name}: the runtime needs it to \
                     hand the notify fd to the agent"
                )));
            }
        }
    }
    let has_listener = seccomp
        .listener_path()
        .as_ref()
        .is_some_and(|p| !p.as_os_str().is_empty());
    if notifies && !has_listener {
        return Err(invalid(
            "linux.seccomp: a rule uses SCMP_ACT_NOTIFY but listenerPath is not set",
        ));
    }
    if let Some(path) = seccomp.listener_path().as_ref().filter(|_| notifies)
        && !path.is_absolute()
    {
        return Err(invalid(format!(
            "linux.seccomp.listenerPath {} is not absolute",
            path.display()
        )));
    }
    Ok(())
}

/// Whether the config asks for a notify listener (the init then needs the OCI state to send it).
pub fn wants_listener(seccomp: &LinuxSeccomp) -> bool {
    seccomp
        .syscalls()
        .iter()
        .flatten()
        .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
}

impl Filter {
    /// Builds the filter with libseccomp and exports it as BPF. Runs in the init before `Ready`,
    /// so `start` only loads it. Fails on what [`check`] could not know: an architecture or action
    /// this libseccomp or kernel lacks.
    ///
    /// Building is costly (about 10 ms of CPU for a podman-sized profile over three
    /// architectures), and most containers of a host share a profile: with `cache` (a directory
    /// under the state root) the program is kept there, keyed by the sha256 of the profile and
    /// the libseccomp version, and later containers only read it.
    pub fn compile(seccomp: &LinuxSeccomp, cache: Option<&Path>) -> Result<Self> {
        let bytes = match cache {
            Some(dir) => cached_program(seccomp, dir)?,
            None => build_program(seccomp)?,
        };
        let mut flags = flags(seccomp.flags().as_deref().unwrap_or_default());
        let listener = if wants_listener(seccomp) {
            flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
            if flags & SECCOMP_FILTER_FLAG_TSYNC != 0 {
                // The kernel refuses TSYNC with NEW_LISTENER unless a TSYNC failure is ESRCH.
                flags |= SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
            }
            Some(Listener {
                path: seccomp
                    .listener_path()
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                metadata: seccomp.listener_metadata().clone().unwrap_or_default(),
                socket: None,
                state: None,
            })
        } else {
            None
        };
        Ok(Self {
            program: parse_program(&bytes),
            flags,
            listener,
        })
    }

    /// Connects to `listenerPath` (if the filter notifies) while the host's filesystem is still
    /// visible, i.e. before pivot_root, and remembers the OCI `state` to send with the fd.
    pub fn connect_listener(&mut self, state: &str) -> Result<()> {
        let Some(listener) = self.listener.as_mut() else {
            return Ok(());
        };
        let socket = UnixStream::connect(&listener.path)
            .with(|| format!("connect to linux.seccomp.listenerPath {}", listener.path))?;
        listener.socket = Some(socket);
        listener.state = serde_json::from_str(state).ok();
        Ok(())
    }

    /// Loads the filter into this thread. Without no_new_privs this needs CAP_SYS_ADMIN (in the
    /// current user namespace), so the caller decides when to call it. For NOTIFY, the listener fd
    /// is then sent to the agent and closed here.
    pub fn load(&mut self) -> Result<()> {
        let len = u16::try_from(self.program.len()).map_err(|_| {
            invalid(format!(
                "the seccomp filter has {} instructions, more than a BPF program can hold",
                self.program.len()
            ))
        })?;
        let prog = libc::sock_fprog {
            len,
            filter: self.program.as_mut_ptr(),
        };
        // SAFETY: seccomp(SET_MODE_FILTER) reads `prog` and the `len` instructions it points to,
        // both alive for the call; it returns 0 or, with NEW_LISTENER, a new fd that we own.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(Errno::last()).with(|| {
                format!(
                    "seccomp(SECCOMP_SET_MODE_FILTER, flags {:#x}, {} instructions)",
                    self.flags, len
                )
            });
        }
        if let Some(listener) = self.listener.take() {
            // SAFETY: with NEW_LISTENER the kernel returned a fresh fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(ret as RawFd) };
            listener.send(fd)?;
        }
        Ok(())
    }
}

impl Listener {
    /// Sends runc's `ContainerProcessState` with the notify fd (SCM_RIGHTS) in one message.
    fn send(self, fd: OwnedFd) -> Result<()> {
        let socket = self.socket.ok_or_else(|| {
            invalid(format!(
                "linux.seccomp.listenerPath {}: not connected",
                self.path
            ))
        })?;
        let pid = self
            .state
            .as_ref()
            .and_then(|s| s.get("pid"))
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let message = serde_json::json!({
            "ociVersion": "1.0.2",
            "fds": ["seccompFd"],
            "pid": pid,
            "metadata": self.metadata,
            "state": self.state,
        })
        .to_string();
        let fds = [fd.as_raw_fd()];
        loop {
            match sendmsg::<()>(
                socket.as_raw_fd(),
                &[IoSlice::new(message.as_bytes())],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(e).with(|| {
                        format!("send the seccomp notify fd to listenerPath {}", self.path)
                    });
                }
            }
        }
    }
}

/// Adds one `syscalls` entry: one libseccomp rule per name, or, when the same argument index is
/// compared more than once, one rule per comparison (runc's behaviour; libseccomp refuses two
/// comparisons of one argument in a rule).
fn add_rule(ctx: &mut ScmpFilterContext, rule: &LinuxSyscall, default: ScmpAction) -> Result<()> {
    let act = action(rule.action(), rule.errno_ret())?;
    if act == default {
        return Ok(());
    }
    let args = rule.args().as_deref().unwrap_or_default();
    let comparisons = args.iter().map(compare).collect::<Result<Vec<_>>>()?;
    let mut per_index = [0u8; MAX_ARG_INDEX + 1];
    for arg in args {
        per_index[arg.index()] += 1;
    }
    let groups: Vec<&[ScmpArgCompare]> = if per_index.iter().any(|&n| n > 1) {
        comparisons.chunks(1).collect()
    } else {
        vec![&comparisons]
    };
    for name in rule.names() {
        let call = syscall(name)?;
        for group in &groups {
            ctx.add_rule_conditional(act, call, group).map_err(|e| {
                seccomp_error(&format!("seccomp rule {name} {:?}", rule.action()), e)
            })?;
        }
    }
    Ok(())
}

/// Resolves a syscall name for the native architecture. A name libseccomp knows on some other
/// architecture resolves to a pseudo number that rules on this one skip; a name it knows nowhere
/// is an error naming it.
fn syscall(name: &str) -> Result<ScmpSyscall> {
    ScmpSyscall::from_name(name).map_err(|_| {
        invalid(format!(
            "unknown syscall {name:?} (libseccomp does not know it)"
        ))
    })
}

/// The libseccomp action for a config action; `errno_ret` is the return code of ERRNO and the
/// message of TRACE, EPERM when absent (runc's default).
fn action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction> {
    let code = || -> Result<u16> {
        let code = errno_ret.unwrap_or(libc::EPERM as u32);
        u16::try_from(code).map_err(|_| invalid(format!("errnoRet {code} does not fit in 16 bits")))
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(code()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(code()?),
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// One argument comparison. For MASKED_EQ, `value` is the mask and `valueTwo` the value the
/// masked argument must equal (libseccomp's datum_a and datum_b, as runc passes them).
fn compare(arg: &LinuxSeccompArg) -> Result<ScmpArgCompare> {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let datum = arg.value_two().unwrap_or(0);
            return index(arg)
                .map(|i| ScmpArgCompare::new(i, ScmpCompareOp::MaskedEqual(arg.value()), datum));
        }
    };
    index(arg).map(|i| ScmpArgCompare::new(i, op, arg.value()))
}

fn index(arg: &LinuxSeccompArg) -> Result<u32> {
    u32::try_from(arg.index())
        .ok()
        .filter(|&i| i as usize <= MAX_ARG_INDEX)
        .ok_or_else(|| {
            invalid(format!(
                "seccomp argument index {} is out of range (0 to {MAX_ARG_INDEX})",
                arg.index()
            ))
        })
}

/// The libseccomp architecture for a config architecture (the config's names are libseccomp's).
fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// The seccomp(2) flag bits for the config's `flags`.
fn flags(flags: &[LinuxSeccompFilterFlag]) -> u32 {
    flags
        .iter()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
        })
        .fold(0, |all, f| all | f)
}

/// Builds the profile with libseccomp and returns the BPF program's bytes, runc's ENOSYS stub
/// first (see [`super::seccomp_enosys`]).
fn build_program(seccomp: &LinuxSeccomp) -> Result<Vec<u8>> {
    let default = action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default)
        .map_err(|e| seccomp_error("seccomp_init(defaultAction)", e))?;
    for arch in seccomp.architectures().iter().flatten() {
        ctx.add_arch(scmp_arch(*arch))
            .map_err(|e| seccomp_error(&format!("seccomp_arch_add({arch})"), e))?;
    }
    for rule in seccomp.syscalls().iter().flatten() {
        add_rule(&mut ctx, rule, default)?;
    }
    let native = ScmpArch::native();
    let mut arches = vec![native];
    for arch in seccomp.architectures().iter().flatten() {
        let arch = match scmp_arch(*arch) {
            ScmpArch::Native => native,
            other => other,
        };
        if !arches.contains(&arch) {
            arches.push(arch);
        }
    }
    let mut bytes: Vec<u8> = super::seccomp_enosys::stub(seccomp, &arches)
        .iter()
        .flat_map(|ins| {
            let mut b = Vec::with_capacity(8);
            b.extend_from_slice(&ins.code.to_ne_bytes());
            b.push(ins.jt);
            b.push(ins.jf);
            b.extend_from_slice(&ins.k.to_ne_bytes());
            b
        })
        .collect();
    bytes.extend(export_bpf(&ctx)?);
    Ok(bytes)
}

/// The program for `seccomp` from the cache in `dir`, building and storing it on a miss. A cache
/// entry that is not a whole number of instructions is ignored and rebuilt; a cache that cannot
/// be written only costs the next container a rebuild.
fn cached_program(seccomp: &LinuxSeccomp, dir: &Path) -> Result<Vec<u8>> {
    use sha2::{Digest, Sha256};
    let profile = serde_json::to_vec(seccomp).map_err(|e| invalid(e.to_string()))?;
    let mut hasher = Sha256::new();
    hasher.update(libseccomp_version().as_bytes());
    // What capsa adds to libseccomp's program: a new stub must not reuse old entries.
    hasher.update(b"\0enosys-stub-1");
    hasher.update([0]);
    hasher.update(&profile);
    let key: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.join(format!("{key}.bpf"));
    let size = std::mem::size_of::<libc::sock_filter>();
    if let Ok(bytes) = std::fs::read(&path)
        && !bytes.is_empty()
        && bytes.len() % size == 0
    {
        return Ok(bytes);
    }
    let bytes = build_program(seccomp)?;
    if let Err(e) = std::fs::create_dir_all(dir)
        .with(|| format!("create {}", dir.display()))
        .and_then(|()| crate::sys::fs::write_atomic(&path, &bytes))
    {
        log::debug!("seccomp cache: {e}");
    }
    Ok(bytes)
}

/// The BPF program libseccomp generates for `ctx`, as bytes. Exported through a memfd
/// (libseccomp 2.5 writes to an fd; a pipe could block on a large program).
fn export_bpf(ctx: &ScmpFilterContext) -> Result<Vec<u8>> {
    let memfd =
        nix::sys::memfd::memfd_create(c"capsa-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .with(|| "memfd_create for the seccomp program".to_string())?;
    let mut file = std::fs::File::from(memfd);
    ctx.export_bpf(&file)
        .map_err(|e| seccomp_error("seccomp_export_bpf", e))?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .with(|| "read the exported seccomp program".to_string())?;
    Ok(bytes)
}

/// Exported BPF bytes as instructions.
fn parse_program(bytes: &[u8]) -> Vec<libc::sock_filter> {
    bytes
        .chunks_exact(std::mem::size_of::<libc::sock_filter>())
        .map(|ins| libc::sock_filter {
            code: u16::from_ne_bytes([ins[0], ins[1]]),
            jt: ins[2],
            jf: ins[3],
            k: u32::from_ne_bytes([ins[4], ins[5], ins[6], ins[7]]),
        })
        .collect()
}

fn seccomp_error(what: &str, e: libseccomp::error::SeccompError) -> Error {
    Error::Step {
        step: what.to_string(),
        message: e.to_string(),
    }
}

/// What `capsa-runtime features` reports about seccomp, in the runtime-spec's features format.
pub fn features() -> serde_json::Value {
    let archs: Vec<String> = ALL_ARCHS
        .iter()
        // The ones this libseccomp has syscall tables for (2.5 lacks LoongArch, M68k, SuperH).
        .filter(|a| ScmpSyscall::from_name_by_arch("read", scmp_arch(**a)).is_ok())
        .map(|a| a.to_string())
        .collect();
    let flags: Vec<String> = [
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ]
    .iter()
    .map(|f| f.to_string())
    .collect();
    serde_json::json!({
        "enabled": true,
        "actions": [
            "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
            "SCMP_ACT_TRAP"
        ],
        "operators": [
            "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
        ],
        "archs": archs,
        "knownFlags": flags,
        "supportedFlags": flags,
    })
}

/// The version of the libseccomp library in use (runc reports it as a `features` annotation).
pub fn libseccomp_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default()
}

/// Every architecture the config can name, sorted by name, for `features`.
const ALL_ARCHS: [Arch; 23] = [
    Arch::ScmpArchAarch64,
    Arch::ScmpArchArm,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
    Arch::ScmpArchX32,
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
];

/// Whether seccomp must be loaded before the init drops its capabilities: without
/// no_new_privs, seccomp(2) needs CAP_SYS_ADMIN, so if the payload will not keep it in its
/// effective set the filter goes on early, as runc does.
pub fn load_before_dropping_capabilities(no_new_privileges: bool, effective_caps: u64) -> bool {
    !no_new_privileges && effective_caps & caps::Capability::CAP_SYS_ADMIN.bitmask() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).expect("profile parses")
    }

    #[test]
    fn compiled_programs_are_cached_and_a_corrupt_entry_is_rebuilt() {
        let dir = std::env::temp_dir().join(format!("capsa-seccomp-cache-{}", std::process::id()));
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        }));
        let built = build_program(&p).expect("builds");
        assert_eq!(cached_program(&p, &dir).expect("miss"), built);
        let entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("cache dir")
            .flatten()
            .collect();
        assert_eq!(entries.len(), 1, "one entry for one profile");
        let entry = entries[0].path();
        assert_eq!(std::fs::read(&entry).expect("entry"), built);
        // A torn or corrupt entry (not whole instructions) is never loaded: it is rebuilt.
        std::fs::write(&entry, [1u8, 2, 3]).expect("corrupt");
        assert_eq!(cached_program(&p, &dir).expect("rebuilt"), built);
        assert_eq!(std::fs::read(&entry).expect("entry"), built);
        // Another profile gets its own entry.
        let other = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]
        }));
        cached_program(&other, &dir).expect("other");
        assert_eq!(std::fs::read_dir(&dir).expect("cache dir").count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errno_defaults_to_eperm_and_honours_errno_ret() {
        let eperm = action(LinuxSeccompAction::ScmpActErrno, None).expect("converts");
        assert_eq!(eperm, ScmpAction::Errno(libc::EPERM));
        let eacces = action(LinuxSeccompAction::ScmpActErrno, Some(13)).expect("converts");
        assert_eq!(eacces, ScmpAction::Errno(13));
        let trace = action(LinuxSeccompAction::ScmpActTrace, None).expect("converts");
        assert_eq!(trace, ScmpAction::Trace(libc::EPERM as u16));
    }

    #[test]
    fn every_action_converts() {
        use LinuxSeccompAction::*;
        let pairs = [
            (ScmpActKill, ScmpAction::KillThread),
            (ScmpActKillThread, ScmpAction::KillThread),
            (ScmpActKillProcess, ScmpAction::KillProcess),
            (ScmpActTrap, ScmpAction::Trap),
            (ScmpActNotify, ScmpAction::Notify),
            (ScmpActLog, ScmpAction::Log),
            (ScmpActAllow, ScmpAction::Allow),
        ];
        for (config, scmp) in pairs {
            assert_eq!(action(config, None).expect("converts"), scmp, "{config}");
        }
    }

    #[test]
    fn errno_ret_above_16_bits_is_refused() {
        let err = action(LinuxSeccompAction::ScmpActErrno, Some(70_000))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("70000"), "{err}");
    }

    #[test]
    fn masked_eq_uses_value_as_mask_and_value_two_as_datum() {
        let arg: LinuxSeccompArg = serde_json::from_value(serde_json::json!(
            {"index": 2, "value": 0o4000, "valueTwo": 0o4000, "op": "SCMP_CMP_MASKED_EQ"}
        ))
        .expect("parses");
        let want = ScmpArgCompare::new(2, ScmpCompareOp::MaskedEqual(0o4000), 0o4000);
        assert_eq!(compare(&arg).expect("converts"), want);
        let ne: LinuxSeccompArg = serde_json::from_value(serde_json::json!(
            {"index": 0, "value": 10, "op": "SCMP_CMP_NE"}
        ))
        .expect("parses");
        let want = ScmpArgCompare::new(0, ScmpCompareOp::NotEqual, 10);
        assert_eq!(compare(&ne).expect("converts"), want);
    }

    #[test]
    fn flags_map_to_seccomp_bits() {
        use LinuxSeccompFilterFlag::*;
        assert_eq!(
            flags(&[
                SeccompFilterFlagTsync,
                SeccompFilterFlagLog,
                SeccompFilterFlagSpecAllow
            ]),
            0b111
        );
        assert_eq!(flags(&[]), 0);
    }

    #[test]
    fn unknown_flag_is_refused_when_parsing_naming_it() {
        let err = serde_json::from_value::<LinuxSeccomp>(serde_json::json!(
            {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}
        ))
        .expect_err("refused")
        .to_string();
        assert!(err.contains("SECCOMP_FILTER_FLAG_BOGUS"), "{err}");
    }

    #[test]
    fn unknown_syscall_name_is_named() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read", "not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]
        }));
        let err = check(&p).expect_err("refused").to_string();
        assert!(
            err.contains("not_a_syscall") && err.contains("syscalls[0]"),
            "{err}"
        );
    }

    #[test]
    fn name_known_only_on_another_arch_is_accepted() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["arm_fadvise64_64"], "action": "SCMP_ACT_ERRNO"}]
        }));
        check(&p).expect("accepted");
        Filter::compile(&p, None).expect("compiles");
    }

    #[test]
    fn notify_needs_a_listener_and_cannot_be_the_default() {
        let no_listener = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        let err = check(&no_listener).expect_err("refused").to_string();
        assert!(err.contains("listenerPath"), "{err}");
        let default = profile(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
        let err = check(&default).expect_err("refused").to_string();
        assert!(err.contains("default action"), "{err}");
    }

    #[test]
    fn arg_index_above_five_is_refused() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        }));
        let err = check(&p).expect_err("refused").to_string();
        assert!(err.contains("argument index 6"), "{err}");
    }

    #[test]
    fn compiles_a_profile_with_repeated_argument_indexes_and_redundant_rules() {
        let p = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}
                ]}
            ]
        }));
        let filter = Filter::compile(&p, None).expect("compiles");
        assert!(!filter.program.is_empty());
        assert_eq!(filter.flags, 0);
    }

    #[test]
    fn early_load_only_without_nnp_and_without_cap_sys_admin() {
        let sys_admin = caps::Capability::CAP_SYS_ADMIN.bitmask();
        assert!(load_before_dropping_capabilities(false, 0));
        assert!(!load_before_dropping_capabilities(false, sys_admin));
        assert!(!load_before_dropping_capabilities(true, 0));
    }
}
