//! The entries of config.json's `mounts`, mounted inside the rootfs before pivot_root. Every
//! destination is resolved inside the rootfs (`RESOLVE_IN_ROOT`), so a symlink in an image can
//! never redirect a mount onto the host; a destination that is itself a symlink is refused.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{SFlag, fstat};
use nix::sys::statvfs::{FsFlags, statvfs};
use oci_spec::runtime::{LinuxIdMapping, Mount};

use super::mount_options::MountOptions;
use crate::cgroups::{Cgroup, Layout};
use crate::error::{Context, Result, invalid};
use crate::sys::fs::{mkdir_all_in_root, open_in_root, touch_in_root};

/// What mounting needs to know beyond the entry itself.
pub struct MountContext<'a> {
    /// The rootfs, open; destinations resolve inside it.
    pub root: &'a OwnedFd,
    /// The bundle directory, for relative bind sources.
    pub bundle: &'a Path,
    /// Whether the container has its own user namespace (no mknod; locked mount flags).
    pub in_user_namespace: bool,
    /// Whether the container has its own cgroup namespace.
    pub new_cgroup_namespace: bool,
    /// The host's cgroup layout and the container's cgroup, for `cgroup` mounts.
    pub cgroups: Option<(&'a Layout, &'a Cgroup)>,
    /// `linux.mountLabel`: the SELinux context of the container's own filesystems.
    pub mount_label: Option<&'a str>,
    /// The user namespaces of the id-mapped mounts, by index in `mounts` (see
    /// [`idmap_namespaces`]).
    pub idmap_userns: &'a [(usize, OwnedFd)],
}

/// Mounts one config entry.
pub fn mount_entry(ctx: &MountContext, index: usize, entry: &Mount) -> Result<()> {
    let dest = entry.destination();
    let options = MountOptions::parse(entry.options().as_deref().unwrap_or_default())?;
    let typ = entry.typ().as_deref().unwrap_or("");
    let what = || format!("mount {} on {}", typ_or_bind(typ, &options), dest.display());
    refuse_symlink_destination(ctx.root, dest)?;
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, dest, &options, typ).with(what);
    }
    if let Some((_, userns)) = ctx.idmap_userns.iter().find(|(i, _)| *i == index) {
        return mount_idmapped(ctx, entry, &options, userns).with(what);
    }
    if options.bind || typ == "bind" {
        let source = bind_source(ctx.bundle, entry)?;
        let source_is_dir = std::fs::metadata(&source)
            .map_err(|e| invalid(format!("bind source {}: {e}", source.display())))?
            .is_dir();
        let target = mount_point(ctx.root, dest, source_is_dir)?;
        bind(&source, &target, &options).with(what)?;
        return propagate(&target, &options).with(what);
    }
    let target = mount_point(ctx.root, dest, true)?;
    let source = entry.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let data = super::lsm::with_mount_label(&options.data, typ, ctx.mount_label);
    let data = (!data.is_empty()).then_some(data.as_str());
    match mount(Some(&source), &target, Some(typ), options.flags, data) {
        Ok(()) => {}
        // Inside a user namespace the kernel refuses sysfs and mqueue when their namespace (net,
        // ipc) belongs to the host; runc falls back to a recursive bind of the host's, and so do we.
        Err(Errno::EPERM) if ctx.in_user_namespace && matches!(typ, "sysfs" | "mqueue") => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            let mut fallback = MountOptions::parse(&["rbind"])?;
            fallback.flags = options.flags;
            bind(Path::new(host), &target, &fallback).with(what)?;
        }
        Err(e) => return Err(e).with(what),
    }
    propagate(&target, &options).with(what)
}

/// The user namespace of each id-mapped mount of `spec` (by index): with the mount's
/// `uidMappings`/`gidMappings`, or the container's own for a bare `idmap`/`ridmap`.
pub fn idmap_namespaces(
    spec: &oci_spec::runtime::Spec,
    plan: &super::namespaces::NamespacePlan,
) -> Result<Vec<(usize, OwnedFd)>> {
    let linux = spec.linux().as_ref();
    let container_maps = linux.and_then(|l| match (l.uid_mappings(), l.gid_mappings()) {
        (Some(u), Some(g)) if plan.has(nix::sched::CloneFlags::CLONE_NEWUSER) => {
            Some((u.as_slice(), g.as_slice()))
        }
        _ => None,
    });
    let mut out = Vec::new();
    for (index, entry) in spec.mounts().iter().flatten().enumerate() {
        let idmap_option = super::mount_options::asks_idmap(entry);
        let (uids, gids): (&[LinuxIdMapping], &[LinuxIdMapping]) =
            match (entry.uid_mappings(), entry.gid_mappings()) {
                (Some(u), Some(g)) => (u, g),
                _ if !idmap_option => continue,
                _ => container_maps.ok_or_else(|| {
                    invalid(format!(
                        "id-mapped mount on {}: no uidMappings/gidMappings and the container has \
                         no user namespace to take them from",
                        entry.destination().display()
                    ))
                })?,
            };
        out.push((index, crate::sys::userns::with_mappings(uids, gids)?));
    }
    Ok(out)
}

/// An id-mapped bind mount (OCI 1.2 `uidMappings`/`gidMappings`, `idmap`/`ridmap`): the source
/// seen through a user namespace with the mount's mappings (or the container's), so a file
/// owned by containerID on disk shows as hostID. Checked in `spec::validate`.
fn mount_idmapped(
    ctx: &MountContext,
    entry: &Mount,
    options: &MountOptions,
    userns: &OwnedFd,
) -> Result<()> {
    let dest = entry.destination();
    let source = bind_source(ctx.bundle, entry)?;
    let source_is_dir = std::fs::metadata(&source)
        .map_err(|e| invalid(format!("bind source {}: {e}", source.display())))?
        .is_dir();
    let target = mount_point(ctx.root, dest, source_is_dir)?;
    let recursive = options.idmap.unwrap_or(false) || options.recursive;
    capsa_images::idmap::attach_idmapped(&source, userns.as_fd(), &target, recursive)
        .map_err(|e| invalid(e.to_string()))?;
    let flags = options.flags & !(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_REC);
    if !flags.is_empty() {
        remount(&target, flags)?;
    }
    propagate(&target, options)
}

fn typ_or_bind<'a>(typ: &'a str, options: &MountOptions) -> &'a str {
    if options.bind { "bind" } else { typ }
}

/// The host path of a bind source; a relative source is relative to the bundle.
fn bind_source(bundle: &Path, entry: &Mount) -> Result<PathBuf> {
    let source = entry.source().as_ref().ok_or_else(|| {
        invalid(format!(
            "bind mount on {} has no source",
            entry.destination().display()
        ))
    })?;
    Ok(if source.is_absolute() {
        source.clone()
    } else {
        bundle.join(source)
    })
}

/// Refuses a destination whose last component is a symlink (its parents resolve in the root).
fn refuse_symlink_destination(root: &OwnedFd, dest: &Path) -> Result<()> {
    if let Ok(fd) = open_in_root(root, dest, OFlag::O_PATH | OFlag::O_NOFOLLOW)
        && fstat(fd.as_fd())
            .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
    {
        return Err(invalid(format!(
            "mount destination {} is a symlink in the rootfs: refused",
            dest.display()
        )));
    }
    Ok(())
}

/// Creates the mount point `dest` inside the root (a directory, or a file for a file bind) and
/// returns its real host path, which contains no symlink.
pub fn mount_point(root: &OwnedFd, dest: &Path, directory: bool) -> Result<PathBuf> {
    let fd = if directory {
        mkdir_all_in_root(root, dest, 0o755)?
    } else {
        touch_in_root(root, dest)?
    };
    std::fs::read_link(crate::sys::fs::fd_path(&fd))
        .with(|| format!("resolve mount point {}", dest.display()))
}

/// Bind-mounts `source` on `target` and applies the flags with a remount (a bind ignores them).
/// Flags the kernel locked on the source (in a user namespace) are kept, or the remount fails.
pub fn bind(source: &Path, target: &Path, options: &MountOptions) -> Result<()> {
    let rec = if options.recursive {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | rec,
        None::<&str>,
    )
    .with(|| format!("bind {} on {}", source.display(), target.display()))?;
    let flags = options.flags & !(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_REC);
    if flags.is_empty() {
        return Ok(());
    }
    remount(target, flags)
}

/// Remounts the bind mount at `target` with `flags`, keeping the flags the kernel locked.
pub fn remount(target: &Path, flags: MsFlags) -> Result<()> {
    let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    match mount(
        None::<&str>,
        target,
        None::<&str>,
        base | flags,
        None::<&str>,
    ) {
        Err(Errno::EPERM) => {
            let locked = locked_flags(target);
            mount(
                None::<&str>,
                target,
                None::<&str>,
                base | flags | locked,
                None::<&str>,
            )
        }
        other => other,
    }
    .with(|| format!("remount {} with {flags:?}", target.display()))
}

/// The per-mount flags currently set on the mount at `path`.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(s, _)| f.contains(*s))
    .fold(MsFlags::empty(), |acc, (_, m)| acc | m)
}

fn propagate(target: &Path, options: &MountOptions) -> Result<()> {
    for flag in &options.propagation {
        mount(None::<&str>, target, None::<&str>, *flag, None::<&str>)
            .with(|| format!("set propagation {flag:?} on {}", target.display()))?;
    }
    Ok(())
}

/// A `cgroup` mount: the container sees its own cgroup as the root of each hierarchy. With a
/// cgroup namespace the kernel does that for us; without one we bind the container's directories.
fn mount_cgroup(ctx: &MountContext, dest: &Path, options: &MountOptions, typ: &str) -> Result<()> {
    let Some((layout, cgroup)) = ctx.cgroups else {
        return Err(invalid("a cgroup mount needs the container's cgroup"));
    };
    let target = mount_point(ctx.root, dest, true)?;
    let flags = options.flags;
    if layout.is_pure_v2() || typ == "cgroup2" {
        let Some(unified) = cgroup.unified.as_deref() else {
            return Err(invalid(
                "cgroup2 mount requested but the host has no cgroup v2",
            ));
        };
        return mount_or_bind(ctx, "cgroup2", None, &target, flags, unified);
    }
    let base = flags & !MsFlags::MS_RDONLY;
    mount(
        Some("tmpfs"),
        &target,
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .with(|| format!("mount tmpfs on {}", target.display()))?;
    for (hierarchy, dir) in layout.hierarchies().iter().zip(&cgroup.dirs) {
        let Some(name) = hierarchy.mount_point.file_name() else {
            continue;
        };
        let sub = target.join(name);
        std::fs::create_dir_all(&sub).with(|| format!("mkdir {}", sub.display()))?;
        let data = hierarchy.controllers.join(",");
        mount_or_bind(ctx, "cgroup", Some(&data), &sub, flags, dir)?;
        // Co-mounted controllers (cpu,cpuacct) are also reachable by each name, as on the host.
        if hierarchy.controllers.len() > 1 {
            for controller in &hierarchy.controllers {
                let link = target.join(controller);
                if Path::new(controller) != Path::new(name) && !link.exists() {
                    std::os::unix::fs::symlink(name, &link)
                        .with(|| format!("symlink {}", link.display()))?;
                }
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_REMOUNT | base | MsFlags::MS_RDONLY,
            Some("mode=755"),
        )
        .with(|| format!("remount {} read-only", target.display()))?;
    }
    Ok(())
}

/// Mounts a cgroup filesystem when the container has its own cgroup namespace (the kernel then
/// shows the container's cgroup as the root), else binds the container's cgroup directory.
fn mount_or_bind(
    ctx: &MountContext,
    fstype: &str,
    data: Option<&str>,
    target: &Path,
    flags: MsFlags,
    host_dir: &Path,
) -> Result<()> {
    if ctx.new_cgroup_namespace {
        match mount(Some(fstype), target, Some(fstype), flags, data) {
            Ok(()) => return Ok(()),
            Err(Errno::EPERM) if ctx.in_user_namespace => {}
            Err(e) => return Err(e).with(|| format!("mount {fstype} on {}", target.display())),
        }
    }
    let mut options = MountOptions::parse(&["bind"])?;
    options.flags = flags;
    bind(host_dir, target, &options)
}
