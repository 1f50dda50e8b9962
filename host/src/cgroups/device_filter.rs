//! Device rules on cgroup v2, which has no devices controller: a BPF_PROG_TYPE_CGROUP_DEVICE
//! program attached to the container's cgroup, as runc and crun load. The program checks the
//! rules from the last to the first (the last matching rule wins, as with v1's devices.allow and
//! devices.deny) and denies what no rule allows.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Context, Result, invalid};

/// One eBPF instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }
}

// Opcodes (linux/bpf.h): class | op | source.
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

// struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// Compiles `rules` into the program's instructions.
fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    // r2 = type, r3 = access, r4 = major, r5 = minor (r1 holds the context).
    let mut prog = vec![
        Insn::new(LDX_MEM_W, 2, 1, 0, 0),
        Insn::new(ALU32_AND_K, 2, 0, 0, 0xffff),
        Insn::new(LDX_MEM_W, 3, 1, 0, 0),
        Insn::new(ALU32_RSH_K, 3, 0, 0, 16),
        Insn::new(LDX_MEM_W, 4, 1, 4, 0),
        Insn::new(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let mut checks: Vec<Insn> = Vec::new();
        match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {}
            LinuxDeviceType::B => checks.push(Insn::new(JMP_JNE_K, 2, 0, 0, DEV_BLOCK)),
            LinuxDeviceType::C | LinuxDeviceType::U => {
                checks.push(Insn::new(JMP_JNE_K, 2, 0, 0, DEV_CHAR))
            }
            // A fifo is not a device the cgroup controls: such a rule never matches.
            LinuxDeviceType::P => continue,
        }
        let access = parse_access(rule.access().as_deref().unwrap_or("rwm"))?;
        if access != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Match only if every requested access is in the rule: (req & rule) == req.
            checks.push(Insn::new(ALU32_MOV_X, 1, 3, 0, 0));
            checks.push(Insn::new(ALU32_AND_K, 1, 0, 0, access));
            checks.push(Insn::new(JMP_JNE_X, 1, 3, 0, 0));
        }
        if let Some(major) = rule.major().filter(|m| *m >= 0) {
            checks.push(Insn::new(JMP_JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor().filter(|m| *m >= 0) {
            checks.push(Insn::new(JMP_JNE_K, 5, 0, 0, minor as i32));
        }
        // Each failed check jumps past this rule's verdict (two instructions after the checks).
        let n = checks.len();
        for (i, insn) in checks.iter_mut().enumerate() {
            if insn.code == JMP_JNE_K || insn.code == JMP_JNE_X {
                insn.off = (n - i - 1 + 2) as i16;
            }
        }
        let catch_all = checks.is_empty();
        prog.extend(checks);
        prog.push(Insn::new(ALU32_MOV_K, 0, 0, 0, rule.allow() as i32));
        prog.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
        if catch_all {
            // A rule that matches every request decides everything after it: stop here, since
            // the verifier rejects a program with unreachable instructions.
            return Ok(prog);
        }
    }
    prog.push(Insn::new(ALU32_MOV_K, 0, 0, 0, 0));
    prog.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
    Ok(prog)
}

fn parse_access(access: &str) -> Result<i32> {
    access.chars().try_fold(0, |acc, c| match c {
        'r' => Ok(acc | ACC_READ),
        'w' => Ok(acc | ACC_WRITE),
        'm' => Ok(acc | ACC_MKNOD),
        other => Err(invalid(format!(
            "device rule access {access:?}: unknown letter {other:?}"
        ))),
    })
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr`, as a zeroed buffer large enough for every command used here.
#[repr(C, align(8))]
struct BpfAttr([u8; 128]);

impl BpfAttr {
    fn new() -> Self {
        Self([0; 128])
    }
    fn put_u32(&mut self, offset: usize, value: u32) {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }
    fn put_u64(&mut self, offset: usize, value: u64) {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
    }
    fn get_u32(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.0[offset..offset + 4].try_into().unwrap_or([0; 4]))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut BpfAttr) -> std::result::Result<libc::c_long, Errno> {
    // SAFETY: bpf(2) reads (and for queries writes) `attr`, a buffer of the size we pass, whose
    // pointers (instructions, license, log, id array) point to memory alive across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<BpfAttr>(),
        )
    };
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

/// Loads the program for `rules` and attaches it to the cgroup v2 directory `dir`, replacing any
/// device program capsa attached before.
pub fn install(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let insns = compile(rules)?;
    let prog = match load(&insns, None) {
        Ok(fd) => fd,
        // Load again with the verifier's log, only to explain the failure.
        Err(errno) => {
            let mut log = vec![0u8; 64 * 1024];
            let _ = load(&insns, Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            return Err(errno).with(|| {
                format!(
                    "load the cgroup v2 device filter ({} rules): {}",
                    rules.len(),
                    String::from_utf8_lossy(&log[..end]).trim()
                )
            });
        }
    };
    let cgroup = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with(|| format!("open {}", dir.display()))?;
    let old = attached_programs(&cgroup)?;
    let mut attr = BpfAttr::new();
    attr.put_u32(0, cgroup.as_raw_fd() as u32);
    attr.put_u32(4, prog.as_raw_fd() as u32);
    attr.put_u32(8, BPF_CGROUP_DEVICE);
    attr.put_u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr)
        .with(|| format!("attach the device filter to {}", dir.display()))?;
    for old_prog in old {
        let mut attr = BpfAttr::new();
        attr.put_u32(0, cgroup.as_raw_fd() as u32);
        attr.put_u32(4, old_prog.as_raw_fd() as u32);
        attr.put_u32(8, BPF_CGROUP_DEVICE);
        bpf(BPF_PROG_DETACH, &mut attr)
            .with(|| format!("detach the previous device filter from {}", dir.display()))?;
    }
    Ok(())
}

fn load(insns: &[Insn], log: Option<&mut Vec<u8>>) -> std::result::Result<OwnedFd, Errno> {
    let license = c"Apache-2.0";
    let mut attr = BpfAttr::new();
    attr.put_u32(0, BPF_PROG_TYPE_CGROUP_DEVICE);
    attr.put_u32(4, insns.len() as u32);
    attr.put_u64(8, insns.as_ptr() as u64);
    attr.put_u64(16, license.as_ptr() as u64);
    if let Some(log) = log {
        attr.put_u32(24, 1);
        attr.put_u32(28, log.len() as u32);
        attr.put_u64(32, log.as_mut_ptr() as u64);
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    bpf(BPF_PROG_LOAD, &mut attr).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The device programs attached directly to `cgroup`, as fds.
fn attached_programs(cgroup: &OwnedFd) -> Result<Vec<OwnedFd>> {
    let mut ids = [0u32; 64];
    let mut attr = BpfAttr::new();
    attr.put_u32(0, cgroup.as_raw_fd() as u32);
    attr.put_u32(4, BPF_CGROUP_DEVICE);
    attr.put_u64(16, ids.as_mut_ptr() as u64);
    attr.put_u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr).with(|| "query attached device filters".to_string())?;
    let count = attr.get_u32(24) as usize;
    ids[..count.min(ids.len())]
        .iter()
        .map(|id| {
            let mut attr = BpfAttr::new();
            attr.put_u32(0, *id);
            bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)
                // SAFETY: the kernel returned a new fd that nothing else owns.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
                .with(|| format!("open device filter program {id}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    }

    /// Runs the program on a request the way the kernel would: a tiny eBPF interpreter for the
    /// few instructions `compile` emits.
    fn verdict(prog: &[Insn], typ: i32, access: i32, major: u32, minor: u32) -> i32 {
        let ctx = [((access as u32) << 16) | typ as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = ctx[i.off as usize / 4] as u64,
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                ALU32_MOV_K => r[dst] = i.imm as u32 as u64,
                ALU32_MOV_X => r[dst] = r[src] as u32 as u64,
                JMP_JNE_K if r[dst] != i.imm as u32 as u64 => {
                    pc = (pc as i64 + i.off as i64) as usize
                }
                JMP_JNE_X if r[dst] != r[src] => pc = (pc as i64 + i.off as i64) as usize,
                JMP_JNE_K | JMP_JNE_X => {}
                JMP_EXIT => return r[0] as i32,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn deny_all_then_allow_null_allows_only_null() {
        let prog = compile(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rw"),
        ])
        .expect("compiles");
        assert_eq!(verdict(&prog, DEV_CHAR, ACC_WRITE, 1, 3), 1);
        assert_eq!(verdict(&prog, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(
            verdict(&prog, DEV_CHAR, ACC_MKNOD, 1, 3),
            0,
            "mknod not in rw"
        );
        assert_eq!(verdict(&prog, DEV_CHAR, ACC_READ, 1, 5), 0);
        assert_eq!(verdict(&prog, DEV_BLOCK, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn the_last_matching_rule_wins() {
        let prog = compile(&[
            rule(true, LinuxDeviceType::C, Some(1), None, "rwm"),
            rule(false, LinuxDeviceType::C, Some(1), Some(5), "rwm"),
        ])
        .expect("compiles");
        assert_eq!(
            verdict(&prog, DEV_CHAR, ACC_READ, 1, 3),
            1,
            "wildcard minor allows"
        );
        assert_eq!(
            verdict(&prog, DEV_CHAR, ACC_READ, 1, 5),
            0,
            "later deny wins"
        );
    }

    #[test]
    fn a_catch_all_rule_ends_the_program_with_no_unreachable_code() {
        let prog = compile(&[
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
        ])
        .expect("compiles");
        // The last instruction is the catch-all's exit: nothing follows it.
        assert_eq!(prog.last().map(|i| i.code), Some(JMP_EXIT));
        assert_eq!(prog[prog.len() - 2], Insn::new(ALU32_MOV_K, 0, 0, 0, 0));
        let exits = prog.iter().filter(|i| i.code == JMP_EXIT).count();
        assert_eq!(
            exits, 2,
            "one exit per rule, no default after the catch-all"
        );
    }

    #[test]
    fn no_rules_denies_everything() {
        let prog = compile(&[]).expect("compiles");
        assert_eq!(verdict(&prog, DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn bad_access_letters_are_refused() {
        assert!(compile(&[rule(true, LinuxDeviceType::C, None, None, "rwx")]).is_err());
    }
}
