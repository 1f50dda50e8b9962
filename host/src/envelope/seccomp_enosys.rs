//! runc's `-ENOSYS` stub: a few BPF instructions put in front of libseccomp's program so that a
//! syscall *newer than every syscall the profile names* fails with ENOSYS instead of the
//! profile's default action (usually EPERM).
//!
//! Why: a profile is written against the kernel and libc of its day. When a newer libc tries a
//! newer call first (glibc and clone3, faccessat2, statx…), EPERM reads as "refused, give up"
//! while ENOSYS reads as "this kernel lacks it, fall back". runc (and so dockerd and podman with
//! runc) do this, and images depend on it; crun does the same. The rule is runc's: per
//! architecture, the highest syscall number any rule names; above it, ENOSYS. There is no stub
//! when the default action already lets calls through (ALLOW, LOG) or already answers ENOSYS.

use libseccomp::{ScmpArch, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

// Classic BPF opcodes (linux/filter.h) and the seccomp_data offsets the stub reads.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// x32 syscalls are x86_64's audit arch with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The audit architecture value seccomp_data carries for a libseccomp architecture, and whether
/// it is the x32 ABI (which shares x86_64's value). `None` for the ones the stub leaves alone.
fn audit_arch(arch: ScmpArch) -> Option<(u32, bool)> {
    Some(match arch {
        ScmpArch::X8664 => (0xC000_003E, false),
        ScmpArch::X32 => (0xC000_003E, true),
        ScmpArch::X86 => (0x4000_0003, false),
        ScmpArch::Aarch64 => (0xC000_00B7, false),
        ScmpArch::Arm => (0x4000_0028, false),
        ScmpArch::Riscv64 => (0xC000_00F3, false),
        ScmpArch::S390X => (0x8000_0016, false),
        ScmpArch::Ppc64Le => (0xC000_0015, false),
        _ => return None,
    })
}

/// Whether the profile wants a stub (runc's conditions).
fn wanted(seccomp: &LinuxSeccomp) -> bool {
    let default = seccomp.default_action();
    if matches!(
        default,
        LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog
    ) {
        return false;
    }
    !(default == LinuxSeccompAction::ScmpActErrno
        && seccomp.default_errno_ret() == Some(libc::ENOSYS as u32))
}

/// The highest syscall number a rule names, for each architecture of the filter.
fn last_syscalls(seccomp: &LinuxSeccomp, arches: &[ScmpArch]) -> Vec<(ScmpArch, u32)> {
    let mut last = Vec::new();
    for &arch in arches {
        let max = seccomp
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|rule| rule.names())
            .filter_map(|name| ScmpSyscall::from_name_by_arch(name, arch).ok())
            .filter_map(|nr| u32::try_from(i32::from(nr)).ok())
            .max();
        if let Some(max) = max {
            last.push((arch, max));
        }
    }
    last
}

/// A jump target while the stub is being laid out.
#[derive(Clone, Copy)]
enum To {
    /// The next instruction.
    Next,
    /// `n` instructions further than the next.
    Skip(u8),
    /// The ENOSYS return.
    Enosys,
    /// The first instruction of libseccomp's program.
    Filter,
}

/// The stub for `seccomp` filtering `arches` (the native one included), empty when none is
/// wanted. It ends by falling into libseccomp's program, which reloads what it needs.
pub(crate) fn stub(seccomp: &LinuxSeccomp, arches: &[ScmpArch]) -> Vec<libc::sock_filter> {
    if !wanted(seccomp) {
        return Vec::new();
    }
    // Group the last numbers by audit arch: (value, last native, last x32).
    let mut groups: Vec<(u32, Option<u32>, Option<u32>)> = Vec::new();
    for (arch, last) in last_syscalls(seccomp, arches) {
        let Some((value, x32)) = audit_arch(arch) else {
            continue;
        };
        let at = match groups.iter().position(|g| g.0 == value) {
            Some(at) => at,
            None => {
                groups.push((value, None, None));
                groups.len() - 1
            }
        };
        if x32 {
            groups[at].2 = Some(last);
        } else {
            groups[at].1 = Some(last);
        }
    }
    if groups.is_empty() {
        return Vec::new();
    }
    let mut code: Vec<(u16, To, To, u32)> =
        vec![(BPF_LD_W_ABS, To::Next, To::Next, SECCOMP_DATA_ARCH)];
    for (value, native, x32) in groups {
        // jeq arch ? this block : the next block. The block's length decides the skip.
        let mut block: Vec<(u16, To, To, u32)> =
            vec![(BPF_LD_W_ABS, To::Next, To::Next, SECCOMP_DATA_NR)];
        match (native, x32) {
            (Some(native), Some(x32)) => {
                block.push((BPF_JMP_JGE_K, To::Skip(1), To::Next, X32_SYSCALL_BIT));
                block.push((BPF_JMP_JGT_K, To::Enosys, To::Filter, native));
                block.push((BPF_JMP_JGT_K, To::Enosys, To::Filter, x32));
            }
            (Some(native), None) => {
                // x32 calls are not this block's: the filter decides them.
                block.push((BPF_JMP_JGE_K, To::Filter, To::Next, X32_SYSCALL_BIT));
                block.push((BPF_JMP_JGT_K, To::Enosys, To::Filter, native));
            }
            (None, Some(x32)) => {
                block.push((BPF_JMP_JGE_K, To::Next, To::Filter, X32_SYSCALL_BIT));
                block.push((BPF_JMP_JGT_K, To::Enosys, To::Filter, x32));
            }
            (None, None) => continue,
        }
        let skip = u8::try_from(block.len()).unwrap_or(u8::MAX);
        code.push((BPF_JMP_JEQ_K, To::Next, To::Skip(skip), value));
        code.extend(block);
    }
    // No block matched: the arch is the filter's business.
    code.push((BPF_JMP_JEQ_K, To::Filter, To::Filter, 0));
    code.push((
        BPF_RET_K,
        To::Next,
        To::Next,
        SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
    ));
    let enosys = code.len() - 1;
    let filter = code.len();
    let offset = |at: usize, to: To| -> u8 {
        let target = match to {
            To::Next => at + 1,
            To::Skip(n) => at + 1 + usize::from(n),
            To::Enosys => enosys,
            To::Filter => filter,
        };
        // The stub is a few dozen instructions, far below the 255 a jump can cover.
        u8::try_from(target - (at + 1)).unwrap_or(u8::MAX)
    };
    code.iter()
        .enumerate()
        .map(|(at, &(op, jt, jf, k))| libc::sock_filter {
            code: op,
            jt: offset(at, jt),
            jf: offset(at, jf),
            k,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the stub alone: Some(ENOSYS) when it returns, None when it falls into the filter.
    fn run(stub: &[libc::sock_filter], arch: u32, nr: u32) -> Option<u32> {
        let mut pc = 0usize;
        let mut acc = 0u32;
        while pc < stub.len() {
            let ins = stub[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { ins.jt } else { ins.jf });
            match ins.code {
                BPF_LD_W_ABS => acc = if ins.k == SECCOMP_DATA_ARCH { arch } else { nr },
                BPF_JMP_JEQ_K => pc += jump(acc == ins.k),
                BPF_JMP_JGT_K => pc += jump(acc > ins.k),
                BPF_JMP_JGE_K => pc += jump(acc >= ins.k),
                BPF_RET_K => return Some(ins.k & 0xffff),
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        None
    }

    fn profile(default: &str, errno: Option<u32>, names: &[&str]) -> LinuxSeccomp {
        let mut value = serde_json::json!({
            "defaultAction": default,
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
        });
        if let Some(errno) = errno {
            value["defaultErrnoRet"] = errno.into();
        }
        serde_json::from_value(value).expect("profile")
    }

    const X86_64: u32 = 0xC000_003E;
    const I386: u32 = 0x4000_0003;

    #[test]
    fn calls_above_the_last_named_one_get_enosys_per_arch() {
        // openat is 257 on x86_64 and 295 on x86; read is 0 and 3.
        let seccomp = profile("SCMP_ACT_ERRNO", None, &["read", "openat"]);
        let stub = stub(&seccomp, &[ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32]);
        let enosys = Some(libc::ENOSYS as u32);
        assert_eq!(run(&stub, X86_64, 257), None);
        assert_eq!(run(&stub, X86_64, 100), None, "below: the filter decides");
        assert_eq!(run(&stub, X86_64, 258), enosys);
        assert_eq!(run(&stub, X86_64, 450), enosys);
        assert_eq!(run(&stub, I386, 295), None);
        assert_eq!(run(&stub, I386, 296), enosys);
        // x32's openat is 257 | X32_SYSCALL_BIT.
        assert_eq!(run(&stub, X86_64, X32_SYSCALL_BIT | 257), None);
        assert_eq!(run(&stub, X86_64, X32_SYSCALL_BIT | 600), enosys);
        assert_eq!(
            run(&stub, 0xC000_00B7, 9999),
            None,
            "another arch: the filter's"
        );
    }

    #[test]
    fn without_x32_in_the_filter_x32_calls_are_left_to_it() {
        let seccomp = profile("SCMP_ACT_ERRNO", None, &["read", "openat"]);
        let stub = stub(&seccomp, &[ScmpArch::X8664]);
        assert_eq!(run(&stub, X86_64, X32_SYSCALL_BIT | 600), None);
        assert_eq!(run(&stub, X86_64, 300), Some(libc::ENOSYS as u32));
    }

    #[test]
    fn no_stub_when_the_default_lets_calls_through_or_is_enosys() {
        let arches = [ScmpArch::X8664];
        assert!(stub(&profile("SCMP_ACT_ALLOW", None, &["read"]), &arches).is_empty());
        assert!(stub(&profile("SCMP_ACT_LOG", None, &["read"]), &arches).is_empty());
        assert!(stub(&profile("SCMP_ACT_ERRNO", Some(38), &["read"]), &arches).is_empty());
        assert!(!stub(&profile("SCMP_ACT_ERRNO", Some(1), &["read"]), &arches).is_empty());
        assert!(!stub(&profile("SCMP_ACT_KILL", None, &["read"]), &arches).is_empty());
    }
}
