//! A container's overlay seen through a user-namespace mapping (Docker's `userns-remap`): each
//! lower dir is attached as an id-mapped mount (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)`)
//! and the overlay is built on those, so a file the store holds as 0:0 is START:START on the
//! host and 0:0 inside the container. The store's layers are shared by every mapping, never
//! chowned or copied.
//!
//! overlayfs keeps private clones of its layers' mounts, so the id-mapped mounts are detached
//! as soon as the overlay is mounted: nothing is left attached but the overlay itself.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::rootfs::{MountMethod, MountPlan, mount, mount_error};

// linux/mount.h
const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (linux/mount.h, MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Attaches `source` at `point` (an existing mount point) as a mount whose owners are mapped
/// through the user namespace `userns`; `recursive` takes the mounts below `source` along
/// (`rbind`), each id-mapped. Also the runtime's id-mapped bind mounts (OCI `uidMappings`).
pub fn attach_idmapped(
    source: &Path,
    userns: BorrowedFd<'_>,
    point: &Path,
    recursive: bool,
) -> Result<()> {
    let tree_flags = if recursive { AT_RECURSIVE } else { 0 };
    let err = |step: &str| mount_error(point, format!("{step} {}", source.display()));
    let source_c = crate::sys::cstr(source.as_os_str()).map_err(err("path"))?;
    // SAFETY: the path is NUL-terminated; open_tree returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source_c.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | tree_flags,
        )
    };
    if fd < 0 {
        return Err(err("open_tree")(io::Error::last_os_error()));
    }
    // SAFETY: open_tree returned a new fd that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: tree is a detached mount fd, the path is an empty literal, attr is a valid
    // mount_attr of the size given.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | tree_flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Err(err(
                "mount_setattr(MOUNT_ATTR_IDMAP): this filesystem cannot be id-mapped (userns-remap \
                 needs the store on ext4, xfs or btrfs, or tmpfs from Linux 6.3)",
            )(e));
        }
        return Err(err("mount_setattr(MOUNT_ATTR_IDMAP)")(e));
    }
    crate::sys::move_mount_to(tree.as_fd(), point).map_err(err("move_mount"))
}

/// Whether `e` says the filesystem (or kernel) cannot make id-mapped mounts, so the caller may
/// fall back to copies with shifted owners.
pub fn unsupported(e: &Error) -> bool {
    matches!(e, Error::Mount { step, source, .. }
        if step.starts_with("mount_setattr")
            && matches!(source.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)))
        || matches!(e, Error::Mount { step, source, .. }
            if step.starts_with("open_tree") && source.raw_os_error() == Some(libc::ENOSYS))
}

fn detach(point: &Path) {
    if let Ok(c) = crate::sys::cstr(point.as_os_str()) {
        // SAFETY: a NUL-terminated path; failure leaves nothing to undo.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(point);
}

/// Mounts `plan`'s overlay on `target` with every lower dir id-mapped through `userns`. The
/// id-mapped mounts are attached under `staging` (created, then removed) only while the overlay
/// is being mounted. The upper and work dirs are used as they are: the caller makes them the
/// mapped root's.
pub fn mount_idmapped(
    plan: &MountPlan,
    target: &Path,
    userns: BorrowedFd<'_>,
    staging: &Path,
) -> Result<MountMethod> {
    std::fs::create_dir_all(staging)
        .map_err(mount_error(staging, "create the staging dir".into()))?;
    let mut attached: Vec<PathBuf> = Vec::new();
    let result = (|| {
        let mut lower_short = Vec::new();
        for (i, layer) in plan.lower.iter().enumerate() {
            let point = staging.join(i.to_string());
            std::fs::create_dir(&point).map_err(mount_error(&point, "mkdir".into()))?;
            attached.push(point.clone());
            attach_idmapped(layer, userns, &point, false)?;
            lower_short.push(PathBuf::from(i.to_string()));
        }
        let mapped = MountPlan {
            lower: attached.clone(),
            lower_short,
            short_base: staging.to_owned(),
            upper: plan.upper.clone(),
            work: plan.work.clone(),
        };
        mount(&mapped, target, MountMethod::Auto)
    })();
    for point in attached.iter().rev() {
        detach(point);
    }
    let _ = std::fs::remove_dir(staging);
    result
}
