//! Tar entry paths, validated once, and the resolver that opens their parent directories inside
//! the layer root without ever following a symlink or leaving the root.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::sys;

/// A tar entry path that is safe to create: relative, without `..`, `.` components dropped.
/// An empty component list is the layer root itself (`./`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryPath {
    components: Vec<Vec<u8>>,
}

/// Why an entry path is refused.
pub(crate) fn parse(raw: &[u8]) -> Result<EntryPath, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.contains(&0) {
        return Err("path contains NUL");
    }
    let mut components = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path contains a '..' component"),
            name => components.push(name.to_vec()),
        }
    }
    Ok(EntryPath { components })
}

impl EntryPath {
    /// The layer root itself (`./`).
    pub(crate) fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The last component (the name to create in the parent directory).
    pub(crate) fn name(&self) -> &[u8] {
        self.components.last().map(Vec::as_slice).unwrap_or(b".")
    }

    /// The parent's components.
    pub(crate) fn parent(&self) -> &[Vec<u8>] {
        &self.components[..self.components.len().saturating_sub(1)]
    }

    /// All components.
    pub(crate) fn components(&self) -> &[Vec<u8>] {
        &self.components
    }

    /// Whether `other` is this path or lies below it.
    pub(crate) fn is_prefix_of(&self, other: &[Vec<u8>]) -> bool {
        other.len() >= self.components.len()
            && other[..self.components.len()] == self.components[..]
    }
}

fn join(components: &[Vec<u8>]) -> io::Result<CString> {
    if components.is_empty() {
        return sys::cstr(OsStr::new("."));
    }
    sys::cstr(OsStr::from_bytes(&components.join(&b'/')))
}

/// Why a directory could not be resolved.
pub(crate) enum ResolveError {
    /// A component is a symlink (or a magic link) or would leave the root.
    Unsafe(&'static str),
    /// Any other OS error.
    Os(&'static str, io::Error),
}

/// Opens directories below the layer root. The most recently used parent (or the directory an
/// entry just made) is kept open, since consecutive tar entries usually share a directory.
pub(crate) struct Resolver {
    root: OwnedFd,
    cached: Option<(Vec<Vec<u8>>, OwnedFd)>,
}

fn classify(op: &'static str, err: io::Error) -> ResolveError {
    match err.raw_os_error() {
        Some(libc::ELOOP) => ResolveError::Unsafe(
            "a parent directory is a symlink (entries are never written through symlinks)",
        ),
        Some(libc::EXDEV) => ResolveError::Unsafe("path resolves outside the layer"),
        Some(libc::ENOTDIR) => ResolveError::Unsafe("a parent path component is not a directory"),
        _ => ResolveError::Os(op, err),
    }
}

impl Resolver {
    pub(crate) fn new(root: OwnedFd) -> Resolver {
        Resolver { root, cached: None }
    }

    /// Forgets the cached directory when `changed` replaces it or one of its ancestors.
    pub(crate) fn invalidate(&mut self, changed: &EntryPath) {
        if let Some((path, _)) = &self.cached
            && changed.is_prefix_of(path)
        {
            self.cached = None;
        }
    }

    /// Forgets the cached directory (a whiteout may have removed it).
    pub(crate) fn forget(&mut self) {
        self.cached = None;
    }

    /// Caches `dir`, the directory at `components` that this unpack has just made or opened
    /// with `O_DIRECTORY | O_NOFOLLOW` from its resolved parent, so the entries below it need
    /// no walk from the root.
    pub(crate) fn remember(&mut self, components: &[Vec<u8>], dir: OwnedFd) {
        self.cached = Some((components.to_vec(), dir));
    }

    /// Opens the directory `components` (an `O_PATH` fd), creating missing directories (mode
    /// 0755, as tar does) when `create` is set.
    pub(crate) fn dir(
        &mut self,
        components: &[Vec<u8>],
        create: bool,
    ) -> Result<BorrowedFd<'_>, ResolveError> {
        if components.is_empty() {
            return Ok(self.root.as_fd());
        }
        let hit = matches!(&self.cached, Some((path, _)) if path[..] == components[..]);
        if !hit {
            let fd = self.open_dir(components, create)?;
            self.cached = Some((components.to_vec(), fd));
        }
        match &self.cached {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(ResolveError::Os(
                "openat2",
                io::Error::other("resolver cache empty"),
            )),
        }
    }

    fn open_dir(&self, components: &[Vec<u8>], create: bool) -> Result<OwnedFd, ResolveError> {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        let path = join(components).map_err(|e| ResolveError::Os("path", e))?;
        match sys::open_beneath(self.root.as_fd(), &path, flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {}
            Err(e) => return Err(classify("openat2", e)),
        }
        // Walk one component at a time, making what is missing.
        let mut dir: Option<OwnedFd> = None;
        for component in components {
            let name =
                sys::cstr(OsStr::from_bytes(component)).map_err(|e| ResolveError::Os("path", e))?;
            let parent = dir.as_ref().map(AsFd::as_fd).unwrap_or(self.root.as_fd());
            let next = match sys::open_beneath(parent, &name, flags) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    sys::mkdirat(parent, &name, 0o755).map_err(|e| classify("mkdirat", e))?;
                    sys::open_beneath(parent, &name, flags).map_err(|e| classify("openat2", e))?
                }
                Err(e) => return Err(classify("openat2", e)),
            };
            dir = Some(next);
        }
        dir.ok_or(ResolveError::Os("openat2", io::Error::other("empty path")))
    }

    /// Opens `components` for reading (a real fd, for fsetxattr/futimens on a directory).
    pub(crate) fn open_readable(
        &self,
        components: &[Vec<u8>],
        flags: libc::c_int,
    ) -> Result<OwnedFd, ResolveError> {
        let path = join(components).map_err(|e| ResolveError::Os("path", e))?;
        sys::open_beneath(self.root.as_fd(), &path, libc::O_RDONLY | flags)
            .map_err(|e| classify("openat2", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_components_are_dropped() {
        let p = parse(b"./usr//bin/./sh")
            .ok()
            .map(|p| p.components().to_vec());
        assert_eq!(
            p,
            Some(vec![b"usr".to_vec(), b"bin".to_vec(), b"sh".to_vec()])
        );
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert_eq!(parse(b"/etc/passwd"), Err("absolute path"));
        assert_eq!(parse(b"a/../../etc"), Err("path contains a '..' component"));
        assert_eq!(parse(b".."), Err("path contains a '..' component"));
    }
}
