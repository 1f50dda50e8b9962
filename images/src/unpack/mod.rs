//! The layer unpacker: one pass over a layer blob that decompresses, hashes the tar stream (the
//! diff_id) and creates each entry below a fresh directory, refusing entries that would escape
//! it. Whiteouts become what overlayfs understands (see `whiteout`).
//!
//! Entries are created with `*at` calls relative to directory fds opened with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so a symlink planted by an earlier entry is never
//! followed, and a hardlink can only name a file this layer already made. Ownership, mode
//! (setuid/setgid/sticky included), mtime and xattrs are kept; device nodes and fifos are made
//! as Docker makes them (the container's device cgroup decides what may be opened). xattrs named
//! `trusted.overlay.*` are dropped: a layer must not steer overlayfs itself.

mod safe_path;
mod whiteout;

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::sys;
use safe_path::{EntryPath, ResolveError, Resolver};
use whiteout::Whiteout;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// Guesses from the first bytes, for inputs that carry no media type (docker-save
    /// tarballs, rootfs imports).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    fn stream_name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// Wraps `reader` in the matching decoder.
    pub fn decoder<'a, R: Read + 'a>(self, reader: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(1 << 17, reader),
            )),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
        })
    }
}

/// What an unpack produced: the uncompressed stream's digest and size.
#[derive(Debug, Clone)]
pub(crate) struct Unpacked {
    pub(crate) diff_id: Digest,
    pub(crate) size: u64,
}

/// Unpacks the layer stream `reader` into the existing empty directory `dest`. `label` names
/// the layer in errors. The caller compares the returned diff_id with the config's.
pub(crate) fn unpack(
    reader: impl Read,
    compression: Compression,
    dest: &Path,
    label: &str,
) -> Result<Unpacked> {
    let root: OwnedFd = File::open(dest).ctx("open", dest)?.into();
    let mut resolver = Resolver::new(root);
    let stream_err = |source| Error::LayerStream {
        layer: label.to_owned(),
        what: compression.stream_name(),
        cause: crate::error::tar_error(source),
    };
    let decoder = compression.decoder(reader).map_err(stream_err)?;
    // tar reads a 512-byte header at a time: buffer above the hasher so the blob is read and
    // hashed in large chunks, not one syscall per header.
    let mut buffered = BufReader::with_capacity(1 << 17, HashingReader::new(decoder));
    {
        let mut archive = tar::Archive::new(&mut buffered);
        let mut ctx = Extract {
            layer: label,
            resolver: &mut resolver,
            dirs: Vec::new(),
            buf: vec![0; 1 << 18],
        };
        for entry in archive.entries().map_err(stream_err)? {
            let mut entry = entry.map_err(stream_err)?;
            ctx.entry(&mut entry, compression)?;
        }
        ctx.finish_dirs();
    }
    // Bytes still in the buffer were hashed when they were read from below it.
    let (diff_id, size) = buffered.into_inner().finish().map_err(stream_err)?;
    Ok(Unpacked { diff_id, size })
}

/// An entry's metadata, from its header and PAX records.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(std::ffi::CString, Vec<u8>)>,
}

struct Extract<'a> {
    layer: &'a str,
    resolver: &'a mut Resolver,
    /// Directory mtimes, set at the end (creating children changes them).
    dirs: Vec<(EntryPath, i64)>,
    buf: Vec<u8>,
}

fn name_of(bytes: &[u8]) -> io::Result<std::ffi::CString> {
    sys::cstr(OsStr::from_bytes(bytes))
}

impl Extract<'_> {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> Error {
        Error::UnsafeEntry {
            layer: self.layer.to_owned(),
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn os(&self, entry: &str, op: &'static str) -> impl FnOnce(io::Error) -> Error + use<> {
        let (layer, entry) = (self.layer.to_owned(), entry.to_owned());
        move |source| Error::Entry {
            layer,
            entry,
            op,
            source,
        }
    }

    fn resolve_err(&self, entry: &str, err: ResolveError) -> Error {
        match err {
            ResolveError::Unsafe(reason) => self.refuse(entry, reason),
            ResolveError::Os(op, source) => self.os(entry, op)(source),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta> {
        let header = entry.header();
        let bad = |e: io::Error| self.refuse(shown, format!("bad header: {e}"));
        let mut uid = header.uid().map_err(bad)?;
        let mut gid = header.gid().map_err(bad)?;
        let mode = header.mode().map_err(bad)? & 0o7777;
        let mut mtime = header.mtime().map_err(bad)? as i64;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(bad)? {
            for ext in pax {
                let ext = ext.map_err(bad)?;
                let Ok(key) = ext.key() else { continue };
                let number = || {
                    ext.value()
                        .ok()
                        .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
                };
                match key {
                    "uid" => uid = number().ok_or_else(|| self.refuse(shown, "bad PAX uid"))?,
                    "gid" => gid = number().ok_or_else(|| self.refuse(shown, "bad PAX gid"))?,
                    "mtime" => mtime = number().map(|n| n as i64).unwrap_or(mtime),
                    _ => {
                        if let Some(name) = key.strip_prefix("SCHILY.xattr.")
                            && !name.starts_with("trusted.overlay.")
                        {
                            let name = name_of(name.as_bytes())
                                .map_err(|_| self.refuse(shown, "xattr name contains NUL"))?;
                            xattrs.push((name, ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
        let id = |v: u64| u32::try_from(v).map_err(|_| self.refuse(shown, "uid/gid out of range"));
        Ok(Meta {
            uid: id(uid)?,
            gid: id(gid)?,
            mode,
            mtime,
            xattrs,
        })
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        compression: Compression,
    ) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(());
        }
        let path = safe_path::parse(&raw).map_err(|reason| self.refuse(&shown, reason))?;
        if path.is_root() {
            return Ok(());
        }
        let meta = self.meta(entry, &shown)?;
        match whiteout::classify(path.name()) {
            Whiteout::None => {}
            Whiteout::Meta => return Ok(()),
            Whiteout::Opaque => return self.opaque(&path, &shown),
            Whiteout::Remove(target) => return self.whiteout(&path, target, &shown),
        }
        let name = name_of(path.name()).map_err(self.os(&shown, "path"))?;
        self.resolver.invalidate(&path);
        let is_dir = kind == tar::EntryType::Directory;
        let link_target = match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&shown, "link without a target"))?;
                if target.is_empty() {
                    return Err(self.refuse(&shown, "link with an empty target"));
                }
                Some(target.into_owned())
            }
            _ => None,
        };
        // The source of a hardlink is resolved before the parent is borrowed from the cache.
        let hardlink_source = match (kind, &link_target) {
            (tar::EntryType::Link, Some(target)) => Some(self.hardlink_source(target, &shown)?),
            _ => None,
        };
        let (layer, shown_ref) = (self.layer, shown.as_str());
        let parent = self
            .resolver
            .dir(path.parent(), true)
            .map_err(|e| resolve_error(layer, shown_ref, e))?;
        let os = |op| move |e| entry_error(layer, shown_ref, op, e);
        // Each node is created exclusively; only when the name is taken is what is there
        // looked at and replaced (tar semantics), so the common case costs no lstat.
        let create = |op: &'static str, make: &mut dyn FnMut() -> io::Result<()>| {
            create_replacing(parent, &name, is_dir, make).map_err(|e| match e {
                Replace::Remove(e) => entry_error(layer, shown_ref, "remove existing", e),
                Replace::Create(e) => entry_error(layer, shown_ref, op, e),
            })
        };
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut fd = None;
                create("openat", &mut || {
                    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
                    fd = Some(sys::openat(parent, &name, flags, 0o600)?);
                    Ok(())
                })?;
                let fd = fd
                    .ok_or_else(|| io::Error::other("no fd"))
                    .map_err(os("openat"))?;
                let mut file = File::from(fd);
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(source) => {
                            return Err(Error::LayerStream {
                                layer: layer.to_owned(),
                                what: compression.stream_name(),
                                cause: crate::error::tar_error(source),
                            });
                        }
                    };
                    file.write_all(&self.buf[..n]).map_err(os("write"))?;
                }
                let fd = file.as_fd();
                sys::lchownat(fd, c"", meta.uid, meta.gid).map_err(os("fchown"))?;
                sys::fchmod(fd, meta.mode).map_err(os("fchmod"))?;
                set_xattrs_fd(fd, &meta).map_err(os("fsetxattr"))?;
                sys::lutimensat(fd, c"", meta.mtime).map_err(os("futimens"))?;
            }
            tar::EntryType::Directory => {
                // An existing directory stays (the contents merge).
                create("mkdirat", &mut || sys::mkdirat(parent, &name, 0o700))?;
                let fd = sys::openat(parent, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                    .map_err(os("openat"))?;
                sys::lchownat(fd.as_fd(), c"", meta.uid, meta.gid).map_err(os("fchown"))?;
                sys::fchmod(fd.as_fd(), meta.mode).map_err(os("fchmod"))?;
                set_xattrs_fd(fd.as_fd(), &meta).map_err(os("fsetxattr"))?;
                // Its entries usually follow: they are created relative to this fd.
                self.resolver.remember(path.components(), fd);
                self.dirs.push((path, meta.mtime));
            }
            tar::EntryType::Symlink => {
                let target = link_target
                    .as_deref()
                    .map(name_of)
                    .transpose()
                    .map_err(os("symlink target"))?;
                let target = target
                    .ok_or_else(|| io::Error::other("missing target"))
                    .map_err(os("symlinkat"))?;
                create("symlinkat", &mut || sys::symlinkat(&target, parent, &name))?;
                sys::lchownat(parent, &name, meta.uid, meta.gid).map_err(os("lchown"))?;
                for (xattr, value) in &meta.xattrs {
                    // Only some namespaces are allowed on symlinks; the rest are not kept.
                    let _ = sys::lsetxattr_at(parent, &name, xattr, value);
                }
                sys::lutimensat(parent, &name, meta.mtime).map_err(os("utimensat"))?;
            }
            tar::EntryType::Link => {
                let (source_dir, source_name) = hardlink_source
                    .ok_or_else(|| io::Error::other("no source"))
                    .map_err(os("linkat"))?;
                let source_dir = source_dir.as_fd();
                let linked = create_replacing(parent, &name, false, &mut || {
                    sys::linkat(source_dir, &source_name, parent, &name)
                });
                linked.map_err(|e| match e {
                    Replace::Remove(e) => entry_error(layer, shown_ref, "remove existing", e),
                    Replace::Create(e) => match e.raw_os_error() {
                        Some(libc::ENOENT) => {
                            refuse(layer, shown_ref, "hardlink target is not in this layer")
                        }
                        Some(libc::EPERM) => {
                            refuse(layer, shown_ref, "hardlink target is a directory")
                        }
                        _ => entry_error(layer, shown_ref, "linkat", e),
                    },
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let bad =
                    |e: io::Error| refuse(layer, shown_ref, format!("bad device number: {e}"));
                let major = entry.header().device_major().map_err(bad)?.unwrap_or(0);
                let minor = entry.header().device_minor().map_err(bad)?.unwrap_or(0);
                let file_type = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(major, minor);
                create("mknodat", &mut || {
                    sys::mknodat(parent, &name, file_type | 0o600, dev)
                })?;
                sys::lchownat(parent, &name, meta.uid, meta.gid).map_err(os("lchown"))?;
                sys::fchmodat(parent, &name, meta.mode).map_err(os("fchmodat"))?;
                for (xattr, value) in &meta.xattrs {
                    sys::lsetxattr_at(parent, &name, xattr, value).map_err(os("lsetxattr"))?;
                }
                sys::lutimensat(parent, &name, meta.mtime).map_err(os("utimensat"))?;
            }
            other => {
                return Err(refuse(
                    layer,
                    shown_ref,
                    format!("unsupported tar entry type {other:?}"),
                ));
            }
        }
        Ok(())
    }

    /// The directory fd and name of a hardlink's source, which must already exist in this layer.
    fn hardlink_source(
        &mut self,
        target: &[u8],
        shown: &str,
    ) -> Result<(OwnedFd, std::ffi::CString)> {
        let source = safe_path::parse(target)
            .map_err(|reason| self.refuse(shown, format!("hardlink target: {reason}")))?;
        if source.is_root() {
            return Err(self.refuse(shown, "hardlink target is the layer root"));
        }
        let dir = match self
            .resolver
            .open_readable(source.parent(), libc::O_PATH | libc::O_DIRECTORY)
        {
            Ok(fd) => fd,
            Err(ResolveError::Os(_, e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(self.refuse(shown, "hardlink target is not in this layer"));
            }
            Err(e) => return Err(self.resolve_err(shown, e)),
        };
        let name = name_of(source.name()).map_err(self.os(shown, "path"))?;
        Ok((dir, name))
    }

    /// `.wh..wh..opq`: the directory (made if this layer has not yet) gets the opaque xattr.
    fn opaque(&mut self, path: &EntryPath, shown: &str) -> Result<()> {
        let dir = path.parent();
        self.resolver
            .dir(dir, true)
            .map_err(|e| resolve_error(self.layer, shown, e))?;
        let fd = self
            .resolver
            .open_readable(dir, libc::O_DIRECTORY)
            .map_err(|e| self.resolve_err(shown, e))?;
        let name = name_of(whiteout::OPAQUE_XATTR.as_bytes()).map_err(self.os(shown, "xattr"))?;
        sys::fsetxattr(fd.as_fd(), &name, b"y")
            .map_err(self.os(shown, "fsetxattr trusted.overlay.opaque"))
    }

    /// `.wh.NAME`: NAME becomes an overlay whiteout, a char device 0:0.
    fn whiteout(&mut self, path: &EntryPath, target: &[u8], shown: &str) -> Result<()> {
        if target.is_empty() || target == b"." || target == b".." {
            return Err(self.refuse(shown, "whiteout of an invalid name"));
        }
        let name = name_of(target).map_err(self.os(shown, "path"))?;
        // The whiteout may replace a directory some cached path runs through.
        self.resolver.forget();
        let (layer, shown_ref) = (self.layer, shown);
        let parent = self
            .resolver
            .dir(path.parent(), true)
            .map_err(|e| resolve_error(layer, shown_ref, e))?;
        replace_existing(parent, &name, false)
            .map_err(|e| entry_error(layer, shown_ref, "remove existing", e))?;
        sys::mknodat(parent, &name, libc::S_IFCHR, libc::makedev(0, 0))
            .map_err(|e| entry_error(layer, shown_ref, "mknodat whiteout", e))
    }

    /// Sets directory mtimes last; a directory replaced since is skipped.
    fn finish_dirs(&mut self) {
        for (path, mtime) in std::mem::take(&mut self.dirs) {
            if let Ok(fd) = self
                .resolver
                .open_readable(path.components(), libc::O_DIRECTORY)
            {
                let _ = sys::lutimensat(fd.as_fd(), c"", mtime);
            }
        }
    }
}

fn refuse(layer: &str, entry: &str, reason: impl Into<String>) -> Error {
    Error::UnsafeEntry {
        layer: layer.to_owned(),
        entry: entry.to_owned(),
        reason: reason.into(),
    }
}

fn entry_error(layer: &str, entry: &str, op: &'static str, source: io::Error) -> Error {
    Error::Entry {
        layer: layer.to_owned(),
        entry: entry.to_owned(),
        op,
        source,
    }
}

fn resolve_error(layer: &str, entry: &str, err: ResolveError) -> Error {
    match err {
        ResolveError::Unsafe(reason) => refuse(layer, entry, reason),
        ResolveError::Os(op, source) => entry_error(layer, entry, op, source),
    }
}

fn set_xattrs_fd(fd: BorrowedFd<'_>, meta: &Meta) -> io::Result<()> {
    for (name, value) in &meta.xattrs {
        sys::fsetxattr(fd, name, value)?;
    }
    Ok(())
}

/// Why creating a node failed: removing what held its name, or the creation itself.
enum Replace {
    Remove(io::Error),
    Create(io::Error),
}

/// Runs `make`, an exclusive create of `name` in `parent` (O_EXCL, mkdirat, symlinkat, ...).
/// When the name is taken, what holds it is replaced (`replace_existing`) and `make` runs once
/// more, except that an existing directory is kept when a directory is wanted.
fn create_replacing(
    parent: BorrowedFd<'_>,
    name: &CStr,
    new_is_dir: bool,
    make: &mut dyn FnMut() -> io::Result<()>,
) -> std::result::Result<(), Replace> {
    match make() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        done => return done.map_err(Replace::Create),
    }
    if replace_existing(parent, name, new_is_dir).map_err(Replace::Remove)? {
        return Ok(());
    }
    make().map_err(Replace::Create)
}

/// A later entry replaces an earlier one of the same name (tar semantics); a directory stays
/// when the new entry is a directory too (their contents merge), and `true` says so.
fn replace_existing(parent: BorrowedFd<'_>, name: &CStr, new_is_dir: bool) -> io::Result<bool> {
    let Some(st) = sys::lstatat(parent, name)? else {
        return Ok(false);
    };
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    match (is_dir, new_is_dir) {
        (true, true) => Ok(true),
        (true, false) => {
            // std's remove_dir_all never follows symlinks below the directory it is given; the
            // magic link names our own directory fd.
            let mut path = format!(
                "/proc/self/fd/{}/",
                std::os::fd::AsRawFd::as_raw_fd(&parent)
            )
            .into_bytes();
            path.extend_from_slice(name.to_bytes());
            std::fs::remove_dir_all(OsStr::from_bytes(&path)).map(|()| false)
        }
        _ => sys::unlinkat(parent, name, 0).map(|()| false),
    }
}
