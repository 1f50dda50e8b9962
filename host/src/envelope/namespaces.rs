//! Which namespaces a container gets: new ones (clone flags) and existing ones joined by path,
//! and the steps that put a process into them.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Context, Result};

/// The namespace part of a container's config, resolved.
#[derive(Debug, Clone)]
pub struct NamespacePlan {
    /// Namespaces to create.
    pub new: CloneFlags,
    /// Namespaces to join: (type flag, path), user first.
    pub joins: Vec<(CloneFlags, PathBuf)>,
}

impl NamespacePlan {
    /// Resolves the namespaces of `linux`.
    pub fn from_config(linux: &Linux) -> Self {
        let mut plan = Self {
            new: CloneFlags::empty(),
            joins: Vec::new(),
        };
        for ns in linux.namespaces().as_deref().unwrap_or_default() {
            let flag = clone_flag(ns.typ());
            match ns.path() {
                Some(path) => plan.joins.push((flag, path.clone())),
                None => plan.new |= flag,
            }
        }
        // A joined user namespace must come first: it owns the others and grants the right to
        // join them. The mount namespace comes last: joining it changes how later paths resolve.
        plan.joins.sort_by_key(|(flag, _)| match *flag {
            CloneFlags::CLONE_NEWUSER => 0,
            CloneFlags::CLONE_NEWNS => 2,
            _ => 1,
        });
        plan
    }

    /// Whether the container creates its own user namespace.
    pub fn new_user(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
    }

    /// Whether the container is in a pid namespace other than the runtime's.
    pub fn pid_namespace(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWPID)
            || self
                .joins
                .iter()
                .any(|(f, _)| *f == CloneFlags::CLONE_NEWPID)
    }

    /// Whether this namespace type is part of the container (new or joined).
    pub fn has(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag) || self.joins.iter().any(|(f, _)| *f == flag)
    }
}

/// The clone(2) flag of a namespace type.
pub fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Joins every namespace in `joins`. All paths are opened before the first `setns`, because
/// joining a mount namespace changes what the later paths point to.
pub fn join_all(joins: &[(CloneFlags, PathBuf)]) -> Result<()> {
    let fds: Vec<(CloneFlags, &PathBuf, OwnedFd)> = joins
        .iter()
        .map(|(flag, path)| {
            open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .with(|| format!("open namespace {}", path.display()))
                .map(|fd| (*flag, path, fd))
        })
        .collect::<Result<_>>()?;
    for (flag, path, fd) in &fds {
        setns(fd, *flag).with(|| format!("setns({})", path.display()))?;
    }
    Ok(())
}

/// Writes the uid and gid maps of the new user namespace of `pid`.
pub fn write_id_maps(pid: i32, linux: &Linux) -> Result<()> {
    let format = |maps: &Option<Vec<LinuxIdMapping>>| {
        maps.as_deref()
            .unwrap_or_default()
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps) in [
        ("uid_map", linux.uid_mappings()),
        ("gid_map", linux.gid_mappings()),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, format(maps)).with(|| format!("write {path}"))?;
    }
    Ok(())
}
