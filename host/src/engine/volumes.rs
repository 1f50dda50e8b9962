//! Anonymous volumes for an image's `Volumes`: each is a fresh directory, filled with what the
//! image holds at that path before the container first runs, as Docker does, so that an image
//! declaring `VOLUME /data` over files in `/data` shows them in the container (and writes land
//! in the volume, not the container layer).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

use super::error::{IoContext, Result, SysContext};
use crate::sys::fs::{fd_path, open_in_root};

/// Copies what the mounted `rootfs` holds at `destination` (resolved inside it: a symlink in
/// the image cannot reach a host path) into the empty `volume`, with modes, owners and times.
/// Nothing there (or not a directory) leaves the volume empty, as with Docker.
pub(crate) fn populate(rootfs: &Path, destination: &str, volume: &Path) -> Result<()> {
    let root = std::fs::File::open(rootfs).io("open", rootfs)?;
    let dir = match open_in_root(
        &root,
        Path::new(destination),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(e).sys(|| format!("open {destination} in the image")),
    };
    let source = fd_path(&dir);
    copy_tree(&source, volume)?;
    copy_attributes(&source, volume)
}

/// Copies the entries of directory `from` into the existing directory `to`; symlinks are
/// copied as links, never followed.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).io("read dir", from)? {
        let entry = entry.io("read dir", from)?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&src).io("stat", &src)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&dst).io("mkdir", &dst)?;
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src).io("readlink", &src)?;
            std::os::unix::fs::symlink(&target, &dst).io("symlink", &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).io("copy", &src)?;
        } else {
            let format = SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
            mknod(
                &dst,
                format,
                Mode::from_bits_truncate(meta.mode()),
                meta.rdev(),
            )
            .sys(|| format!("mknod {}", dst.display()))?;
        }
        copy_attributes(&src, &dst)?;
    }
    Ok(())
}

/// Gives `to` the owner, mode and times of `from` (links: owner and times only).
fn copy_attributes(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(from).io("stat", from)?;
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).io("chown", to)?;
    if !meta.file_type().is_symlink() {
        // After chown, which clears set-id bits.
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .io("chmod", to)?;
    }
    utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &TimeSpec::new(meta.atime(), meta.atime_nsec()),
        &TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
        UtimensatFlags::NoFollowSymlink,
    )
    .sys(|| format!("set the times of {}", to.display()))
}
