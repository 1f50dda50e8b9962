//! The container's /dev: the default devices every container gets (null, zero, full, random,
//! urandom, tty), the `linux.devices` of the config, and the standard /dev symlinks. In a user
//! namespace mknod is not allowed, so the host's device is bind-mounted instead, as runc does.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::unistd::{Gid, Uid, chown};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mount_options::MountOptions;
use super::mounts::{bind, mount_point};
use crate::error::{Context, Result};

/// A device node to create.
struct Device {
    path: PathBuf,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Creates the default devices and `extra` (from linux.devices) inside the root at `rootfs`.
pub fn create_devices(
    root: &OwnedFd,
    extra: &[LinuxDevice],
    in_user_namespace: bool,
) -> Result<()> {
    let defaults = DEFAULT_DEVICES.iter().map(|(path, major, minor)| Device {
        path: PathBuf::from(path),
        kind: SFlag::S_IFCHR,
        major: *major,
        minor: *minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    });
    let configured = extra.iter().map(|d| Device {
        path: d.path().clone(),
        kind: match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        },
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666),
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    });
    for device in defaults.chain(configured) {
        if in_user_namespace {
            bind_host_device(root, &device)?;
        } else {
            make_node(root, &device)?;
        }
    }
    Ok(())
}

fn make_node(root: &OwnedFd, device: &Device) -> Result<()> {
    let parent = device.path.parent().unwrap_or(Path::new("/dev"));
    let dir = mount_point(root, parent, true)?;
    let name = device.path.file_name().unwrap_or_default();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    mknod(
        &path,
        device.kind,
        Mode::from_bits_truncate(device.mode),
        makedev(device.major, device.minor),
    )
    .with(|| format!("mknod {}", device.path.display()))?;
    // mknod applies the umask; set the mode the config asked for exactly.
    std::fs::set_permissions(
        &path,
        std::os::unix::fs::PermissionsExt::from_mode(device.mode & 0o7777),
    )
    .with(|| format!("chmod {}", device.path.display()))?;
    chown(
        &path,
        Some(Uid::from_raw(device.uid)),
        Some(Gid::from_raw(device.gid)),
    )
    .with(|| format!("chown {}", device.path.display()))
}

fn bind_host_device(root: &OwnedFd, device: &Device) -> Result<()> {
    let target = mount_point(root, &device.path, false)?;
    let mut options = MountOptions::parse(&["bind"])?;
    options.flags = MsFlags::empty();
    bind(&device.path, &target, &options)
}

/// The standard /dev symlinks (`/dev/fd`, `/dev/stdin`…, `/dev/ptmx` → `pts/ptmx`), created in
/// the rootfs's /dev (which must be the container's own tmpfs).
pub fn create_symlinks(root: &OwnedFd, with_proc: bool) -> Result<()> {
    let dev = mount_point(root, Path::new("/dev"), true)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if with_proc {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let link = dev.join(name);
        match std::os::unix::fs::symlink(target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with(|| format!("symlink /dev/{name}")),
        }
    }
    // /dev/ptmx must be the container's devpts instance, not a host ptmx node.
    let ptmx = dev.join("ptmx");
    let _ = std::fs::remove_file(&ptmx);
    std::os::unix::fs::symlink("pts/ptmx", &ptmx).with(|| "symlink /dev/ptmx".to_string())
}
