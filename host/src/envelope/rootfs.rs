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

/// Prepares the mount namespace and turns the rootfs into a mount point of its own. The
/// namespace's `/` gets the requested propagation now (rslave by default, so nothing the
/// container mounts reaches the host), except `unbindable`, which would make the rootfs bind
/// itself fail: that one, like every requested type, is applied to the container's own `/` at the
/// end ([`apply_root_propagation`]), as runc does since 1.1.
pub fn prepare(rootfs: &Path, propagation: Option<&str>) -> Result<std::os::fd::OwnedFd> {
    let flag = propagation
        .and_then(propagation_flag)
        .filter(|f| !f.contains(MsFlags::MS_UNBINDABLE))
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
        .with(|| format!("set propagation {flag:?} on /"))?;
    let shared = flag.contains(MsFlags::MS_SHARED);
    if shared {
        // pivot_root refuses a new root whose parent mount is shared: make the mount that holds
        // the rootfs private (in this namespace only; the host's copy keeps its peers).
        make_parent_mount_private(rootfs)?;
    }
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with(|| format!("bind rootfs {}", rootfs.display()))?;
    if shared {
        // A rootfs that is a mount of its own (an overlay) was bound with its peers: leave them.
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

/// Makes the mount that `path` lives on private, if it is not already.
fn make_parent_mount_private(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .with(|| "read /proc/self/mountinfo".to_string())?;
    let Some((mount_point, shared)) = mount_holding(&text, path) else {
        return Ok(());
    };
    if !shared {
        return Ok(());
    }
    mount(
        None::<&str>,
        &mount_point,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .with(|| {
        format!(
            "make {} (the mount holding the rootfs) private",
            mount_point.display()
        )
    })
}

/// The mount point of the mount holding `path` (the longest mount point that is a prefix of it,
/// the topmost if several are stacked), and whether that mount is shared.
fn mount_holding(mountinfo: &str, path: &Path) -> Option<(std::path::PathBuf, bool)> {
    let mut best: Option<(std::path::PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let point = std::path::PathBuf::from(crate::cgroups::unescape_mountinfo(point));
        if !path.starts_with(&point) {
            continue;
        }
        let shared = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .any(|f| f.starts_with("shared:"));
        let longer = best
            .as_ref()
            .is_none_or(|(b, _)| point.as_os_str().len() >= b.as_os_str().len());
        if longer {
            best = Some((point, shared));
        }
    }
    best
}

/// Applies `linux.rootfsPropagation` to the container's `/`, once every mount is made (an
/// unbindable `/` would refuse the binds of masked and read-only paths).
pub fn apply_root_propagation(propagation: Option<&str>) -> Result<()> {
    let Some(keyword) = propagation else {
        return Ok(());
    };
    let flag = propagation_flag(keyword).ok_or_else(|| {
        crate::error::invalid(format!("linux.rootfsPropagation {keyword:?} is unknown"))
    })?;
    mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
        .with(|| format!("linux.rootfsPropagation {keyword}: set {flag:?} on /"))
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

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /var/lib rw shared:5 - ext4 /dev/sdb rw
31 30 0:41 / /var/lib/x\\040y rw - tmpfs t rw
32 22 0:42 / /var rw master:3 - tmpfs t rw
";

    #[test]
    fn the_mount_holding_a_path_is_the_longest_prefix() {
        let find = |p: &str| mount_holding(MOUNTINFO, Path::new(p));
        assert_eq!(find("/srv/rootfs"), Some(("/".into(), true)));
        assert_eq!(find("/var/lib/c/rootfs"), Some(("/var/lib".into(), true)));
        assert_eq!(find("/var/lib/x y/r"), Some(("/var/lib/x y".into(), false)));
        assert_eq!(find("/var/run"), Some(("/var".into(), false)));
        // "/var/libx" is not under "/var/lib".
        assert_eq!(find("/var/libx"), Some(("/var".into(), false)));
    }
}
