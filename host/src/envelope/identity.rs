//! Who the container process is: rlimits, supplementary groups, gid, uid, umask, the five
//! capability sets and no_new_privs. Applied in the order the kernel requires: the bounding set is
//! trimmed while we still have CAP_SETPCAP, the uid changes with keep-caps so the permitted set
//! survives, then the exact sets are installed in one capset(2).

use std::str::FromStr;

use nix::errno::Errno;
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimit, Process};

use super::exec::Payload;
use super::init::mark_fds_cloexec;
use super::seccomp::{self, Filter};
use crate::error::{Context, Error, Result, invalid};
use crate::wasm::ShimExec;

/// The capability sets of the config as bit masks, restricted to what this kernel knows.
#[derive(Debug, Default, Clone, Copy)]
pub struct CapabilityMasks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapabilityMasks {
    /// Converts the config's capability names. Unknown names were refused when config.json was
    /// parsed; names this kernel is too old for are dropped with a warning, as runc does.
    pub fn from_config(caps: &LinuxCapabilities) -> Result<Self> {
        let last = last_cap();
        let mask = |set: &Option<Capabilities>| -> Result<u64> {
            let mut bits = 0u64;
            for cap in set.iter().flatten() {
                let name = serde_json::to_value(cap)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let parsed = caps::Capability::from_str(&name)
                    .map_err(|_| invalid(format!("unknown capability {name:?}")))?;
                if parsed.index() as u32 > last {
                    log::warn!("capability {name} is not supported by this kernel; ignored");
                    continue;
                }
                bits |= parsed.bitmask();
            }
            Ok(bits)
        };
        Ok(Self {
            bounding: mask(caps.bounding())?,
            effective: mask(caps.effective())?,
            permitted: mask(caps.permitted())?,
            inheritable: mask(caps.inheritable())?,
            ambient: mask(caps.ambient())?,
        })
    }
}

/// The highest capability number this kernel supports.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Sets the process's rlimits. Raising a hard limit needs CAP_SYS_RESOURCE, which a runtime may
/// not have (this project's CI does not): the error then says so instead of a bare EPERM.
pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for r in rlimits {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let resource = rlimit_resource(&name)
            .ok_or_else(|| invalid(format!("unknown rlimit type {name:?}")))?;
        let limit = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit reads `limit`, which lives across the call.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            let errno = Errno::last();
            let mut current = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into `current`, which we own.
            unsafe { libc::getrlimit(resource, &mut current) };
            if errno == Errno::EPERM && r.hard() > current.rlim_max {
                return Err(Error::Step {
                    step: format!("set {name} to {}:{}", r.soft(), r.hard()),
                    message: format!(
                        "the hard limit {} is above this host's {} and raising it needs \
                         CAP_SYS_RESOURCE, which the runtime does not have",
                        r.hard(),
                        current.rlim_max
                    ),
                });
            }
            return Err(errno).with(|| format!("setrlimit {name} {}:{}", r.soft(), r.hard()));
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Becomes the config's user with the config's capabilities. `setgroups_allowed` is false in a
/// user namespace whose `setgroups` file says deny.
pub fn become_user(process: &Process, caps: &CapabilityMasks) -> Result<()> {
    for bit in 0..=last_cap() {
        if caps.bounding & (1u64 << bit) == 0 {
            // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes integers only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, bit as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(Errno::last())
                    .with(|| format!("drop capability {bit} from bounding set"));
            }
        }
    }
    let user = process.user();
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match setgroups(&gids) {
        Ok(()) => {}
        // A user namespace whose setgroups is denied keeps the groups it has; only fail if the
        // config asked for some.
        Err(Errno::EPERM) if gids.is_empty() => {}
        Err(e) => return Err(e).with(|| format!("setgroups({:?})", user.additional_gids())),
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).with(|| format!("setresgid({gid})"))?;
    // SAFETY: prctl(PR_SET_KEEPCAPS) takes integers only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).with(|| format!("setresuid({uid})"))?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    capset(caps)?;
    // SAFETY: prctl(PR_CAP_AMBIENT, …) takes integers only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // The kernel only lets a capability be ambient when it is permitted and inheritable; runc
    // leaves out the others silently (its own default spec has ambient but no inheritable caps),
    // and so do we, so configs written for runc behave the same.
    let raisable = caps.ambient & caps.permitted & caps.inheritable;
    if raisable != caps.ambient {
        log::debug!(
            "ambient capabilities {:#x} are not permitted and inheritable: left out",
            caps.ambient & !raisable
        );
    }
    for bit in 0..64u32 {
        if raisable & (1u64 << bit) != 0 {
            // SAFETY: as above.
            let ret = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    bit as libc::c_ulong,
                    0,
                    0,
                )
            };
            if ret != 0 {
                return Err(Errno::last()).with(|| format!("raise ambient capability {bit}"));
            }
        }
    }
    if let Some(mask) = user.umask() {
        umask(Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// Installs effective, permitted and inheritable at once.
fn capset(caps: &CapabilityMasks) -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let split = |mask: u64| (mask as u32, (mask >> 32) as u32);
    let (e0, e1) = split(caps.effective);
    let (p0, p1) = split(caps.permitted);
    let (i0, i1) = split(caps.inheritable);
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        Data {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset reads a v3 header and two data structs, which live across the call.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if ret != 0 {
        return Err(Errno::last()).with(|| {
            format!(
                "capset(effective={:#x}, permitted={:#x}, inheritable={:#x})",
                caps.effective, caps.permitted, caps.inheritable
            )
        });
    }
    Ok(())
}

/// Sets no_new_privs, so no exec can gain privileges (setuid bits, file capabilities).
/// `process.ioPriority`: ioprio_set(2) on this process, inherited by the payload.
pub fn set_io_priority(priority: &oci_spec::runtime::LinuxIOPriority) -> Result<()> {
    use oci_spec::runtime::IOPriorityClass;
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_SHIFT: i64 = 13;
    let class: i64 = match priority.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let level = priority.priority();
    if !(0..=7).contains(&level) {
        return Err(invalid(format!(
            "process.ioPriority.priority {level} is not in 0..=7"
        )));
    }
    let value = (class << IOPRIO_CLASS_SHIFT) | level;
    // SAFETY: ioprio_set takes three integers; `0` is the calling process.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if ret != 0 {
        return Err(Errno::last()).with(|| format!("process.ioPriority: ioprio_set({value:#x})"));
    }
    Ok(())
}

/// `linux.personality`: the execution domain the payload runs in (LINUX or LINUX32).
pub fn set_personality(personality: &oci_spec::runtime::LinuxPersonality) -> Result<()> {
    use oci_spec::runtime::LinuxPersonalityDomain;
    const PER_LINUX: libc::c_ulong = 0x0000;
    const PER_LINUX32: libc::c_ulong = 0x0008;
    let domain = match personality.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    // SAFETY: personality(2) takes one integer and only changes this process's domain.
    let ret = unsafe { libc::personality(domain) };
    if ret == -1 {
        return Err(Errno::last()).with(|| format!("linux.personality {domain:#x}"));
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Errno::last()).with(|| "prctl(PR_SET_NO_NEW_PRIVS)".to_string());
    }
    Ok(())
}

/// What [`assume_identity`] leaves for the last steps before exec.
pub struct Assumed<'a> {
    /// The program to exec (native, or the shim for a wasm program).
    pub payload: Payload<'a>,
    /// `process.noNewPrivileges`: set just before the filter is loaded.
    pub no_new_privileges: bool,
}

/// The steps that make this process the container's `process`, shared by the init and an
/// exec'd process so the two cannot drift apart: chdir to `cwd`, find the program, rlimits,
/// oomScoreAdj, then uid/gid and capabilities. Without no_new_privs, seccomp(2) needs
/// CAP_SYS_ADMIN, so when the process will not keep it the filter is loaded (and taken out of
/// `filter`) before the capabilities go, as runc does: from then on every syscall until execve
/// must pass the profile. Descriptors from 3 + `preserve_fds` on are marked close-on-exec.
pub fn assume_identity<'a>(
    process: &Process,
    wasm: Option<&'a ShimExec>,
    filter: &mut Option<Filter>,
    preserve_fds: u32,
) -> Result<Assumed<'a>> {
    std::env::set_current_dir(process.cwd())
        .with(|| format!("chdir {}", process.cwd().display()))?;
    super::lsm::apply_process_labels(process)?;
    let payload = Payload::resolve(process, wasm)?;
    set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(priority) = process.io_priority() {
        set_io_priority(priority)?;
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .with(|| format!("set oomScoreAdj {adj}"))?;
    }
    let caps = process
        .capabilities()
        .as_ref()
        .map(CapabilityMasks::from_config)
        .transpose()?
        .unwrap_or_default();
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);
    if seccomp::load_before_dropping_capabilities(no_new_privileges, caps.effective)
        && let Some(mut early) = filter.take()
    {
        early.load()?;
    }
    become_user(process, &caps)?;
    mark_fds_cloexec(3 + preserve_fds);
    Ok(Assumed {
        payload,
        no_new_privileges,
    })
}
