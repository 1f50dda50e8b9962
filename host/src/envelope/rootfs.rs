//! The container's root filesystem: preparing the mount namespace, switching root with
//! pivot_root (or MS_MOVE + chroot under `--no-pivot`), and the finishing touches that apply to
//! the new root (masked and read-only paths, a read-only `/`).

use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, pivot_root};

use super::mount_options::{MountOptions, propagation_flag};
use super::mounts::{bind, remount};
use crate::error::{Context, Result};

/// Makes the mount namespace's propagation what the config asks (rslave by default, so nothing the
/// container mounts reaches the host) and turns the rootfs into a mount point of its own.
pub fn prepare(rootfs: &Path, propagation: Option<&str>) -> Result<std::os::fd::OwnedFd> {
    let flag = propagation
        .map(propagation_flag)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
        .with(|| format!("set propagation {flag:?} on /"))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with(|| format!("bind rootfs {}", rootfs.display()))?;
    // pivot_root refuses a new root whose parent mount is shared.
    if flag.contains(MsFlags::MS_SHARED) {
        mount(
            None::<&str>,
            rootfs,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .with(|| format!("make {} private", rootfs.display()))?;
    }
    open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with(|| format!("open rootfs {}", rootfs.display()))
}

/// Makes `rootfs` the process's `/`. With pivot_root the old root is detached entirely, so
/// nothing of the host stays reachable; `no_pivot` (for ramfs roots) moves the mount instead.
pub fn switch_root(rootfs: &Path, no_pivot: bool) -> Result<()> {
    chdir(rootfs).with(|| format!("chdir {}", rootfs.display()))?;
    if no_pivot {
        mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .with(|| format!("move {} to /", rootfs.display()))?;
        chroot(".").with(|| "chroot .".to_string())?;
    } else {
        // Stacking the old root under the new one at "." needs no directory in the image.
        pivot_root(".", ".").with(|| format!("pivot_root {}", rootfs.display()))?;
        // Unmounting must not propagate to the host: make the old root a slave first.
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .with(|| "make old root rslave".to_string())?;
        umount2(".", MntFlags::MNT_DETACH).with(|| "detach old root".to_string())?;
    }
    chdir("/").with(|| "chdir /".to_string())
}

/// Hides each of `paths`: a directory under an empty read-only tmpfs, a file under /dev/null.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for path in paths {
        let path = Path::new(path);
        let result = if path.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        match result {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e).with(|| format!("mask {}", path.display())),
        }
    }
    Ok(())
}

/// Makes each of `paths` read-only (a bind of itself, remounted read-only).
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    let mut options = MountOptions::parse(&["rbind"])?;
    options.flags =
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for path in paths {
        let path = Path::new(path);
        if !path.exists() {
            continue;
        }
        bind(path, path, &options).with(|| format!("make {} read-only", path.display()))?;
    }
    Ok(())
}

/// Makes `/` read-only (root.readonly).
pub fn readonly_root() -> Result<()> {
    remount(Path::new("/"), MsFlags::MS_RDONLY)
}
