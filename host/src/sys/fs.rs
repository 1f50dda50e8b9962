//! File helpers that resolve paths *inside* a root directory, so that a symlink in a container's
//! rootfs can never make the runtime touch a host file (`openat2` with `RESOLVE_IN_ROOT`), plus the
//! atomic write every piece of state goes through.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, mkdirat};

use crate::error::{Context, Result};

/// The path through which the kernel resolves `fd` to the object it is open on.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `path` made relative (leading `/` removed), for resolution against a root fd.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect()
}

/// Opens `path` as seen from inside `root`: `..` and symlinks cannot leave it.
pub fn open_in_root(root: &impl AsFd, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root.as_fd(), &rel, how)
}

/// Creates `path` and its missing parents inside `root` (like `mkdir -p`, contained in the root),
/// and returns an O_PATH handle on the final directory.
pub fn mkdir_all_in_root(root: &impl AsFd, path: &Path, mode: u32) -> Result<OwnedFd> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    if let Ok(fd) = open_in_root(root, path, dir_flags) {
        return Ok(fd);
    }
    let rel = relative(path);
    let mut prefix = PathBuf::new();
    let mut parent = open_in_root(root, &prefix, dir_flags)
        .with(|| format!("open rootfs for {}", path.display()))?;
    for component in rel.components() {
        prefix.push(component);
        match open_in_root(root, &prefix, dir_flags) {
            Ok(fd) => parent = fd,
            Err(Errno::ENOENT) => {
                let name = Path::new(component.as_os_str());
                match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e).with(|| format!("mkdir {}", prefix.display())),
                }
                parent = open_in_root(root, &prefix, dir_flags)
                    .with(|| format!("open {}", prefix.display()))?;
            }
            Err(e) => return Err(e).with(|| format!("open {}", prefix.display())),
        }
    }
    Ok(parent)
}

/// Ensures a regular file exists at `path` inside `root` (creating parents), to serve as the mount
/// point of a file bind mount. Returns an O_PATH handle on it.
pub fn touch_in_root(root: &impl AsFd, path: &Path) -> Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, path, OFlag::O_PATH) {
        return Ok(fd);
    }
    let parent_path = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| crate::error::invalid(format!("{} has no file name", path.display())))?;
    let parent = mkdir_all_in_root(root, parent_path, 0o755)?;
    let parent_dir =
        std::fs::File::open(fd_path(&parent)).with(|| format!("open {}", parent_path.display()))?;
    nix::fcntl::openat(
        parent_dir.as_fd(),
        name,
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .with(|| format!("create {}", path.display()))?;
    open_in_root(root, path, OFlag::O_PATH).with(|| format!("open {}", path.display()))
}

/// Writes `bytes` to `path` atomically: a reader sees the old content or the new, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // Unique per process and call: threads of one process (the daemon) may write the same file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with(|| format!("write {}", path.display()))
}
