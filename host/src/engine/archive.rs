//! `docker cp` and `docker export`: a path of a container's filesystem as a tar stream, and a
//! tar stream unpacked into a directory of it (`HEAD/GET/PUT /containers/{id}/archive`,
//! `GET /containers/{id}/export`).
//!
//! Paths are resolved inside the container's root with `openat2(RESOLVE_IN_ROOT)`, and trees
//! are walked and written through directory descriptors with `O_NOFOLLOW` on every step, so
//! neither a symlink in the container nor one swapped in while the copy runs (CVE-2018-15664's
//! race) can make the engine read or write a host file. A running container is seen through
//! its init's `/proc/<pid>/root` (its volumes and binds included); a stopped one through its
//! overlay, with its volumes at their mount points.

use super::userns::IdMap;
use std::ffi::{CStr, CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, fstatat};
use serde::{Deserialize, Serialize};

use super::Engine;
use super::container::{ContainerRecord, State};
use super::error::{EngineError, IoContext, Result, SysContext, invalid};
use crate::sys::fs::open_in_root;

/// Docker's `X-Docker-Container-Path-Stat`: what a path is (Go's `os.FileMode` bits in
/// `mode`, which the docker CLI decodes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

// Go's os.FileMode type bits.
const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_PIPE: u32 = 1 << 25;
const GO_SOCKET: u32 = 1 << 24;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_CHARDEV: u32 = 1 << 21;
const GO_STICKY: u32 = 1 << 20;

/// A Unix `st_mode` as Go's `os.FileMode`.
fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    match st_mode & libc::S_IFMT {
        libc::S_IFDIR => m |= GO_DIR,
        libc::S_IFLNK => m |= GO_SYMLINK,
        libc::S_IFIFO => m |= GO_PIPE,
        libc::S_IFSOCK => m |= GO_SOCKET,
        libc::S_IFBLK => m |= GO_DEVICE,
        libc::S_IFCHR => m |= GO_DEVICE | GO_CHARDEV,
        _ => {}
    }
    if st_mode & libc::S_ISUID != 0 {
        m |= GO_SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= GO_SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= GO_STICKY;
    }
    m
}

/// `path` as components below the root (`..` cannot climb above it).
fn normalise(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The root a path of `c` is resolved in: (root fd, the path below it).
struct View {
    root: OwnedFd,
    rel: PathBuf,
}

impl Engine {
    /// The root a path of `c` is resolved in, and the path below it: the init's root when it
    /// runs; else the overlay (mounted when it is not), or the volume mounted at the path.
    fn view(&self, c: &ContainerRecord, path: &str) -> Result<View> {
        let rel = normalise(path);
        let (state, pid) = self.state(c);
        let open_dir = |p: &Path| -> Result<OwnedFd> {
            nix::fcntl::open(
                p,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .sys(|| format!("open {}", p.display()))
        };
        if matches!(state, State::Running | State::Paused) && pid > 0 {
            return Ok(View {
                root: open_dir(Path::new(&format!("/proc/{pid}/root")))?,
                rel,
            });
        }
        // A stopped container: its volumes and binds are not in the overlay; the longest
        // mount point that holds the path wins.
        let as_path = Path::new("/").join(&rel);
        let mount = c
            .mounts
            .iter()
            .filter(|m| m.kind != "tmpfs")
            .filter(|m| as_path.starts_with(&m.destination))
            .max_by_key(|m| m.destination.len());
        if let Some(m) = mount {
            let below = as_path
                .strip_prefix(&m.destination)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            return Ok(View {
                root: open_dir(Path::new(&m.source))?,
                rel: below,
            });
        }
        self.ensure_mounted(c)?;
        Ok(View {
            root: open_dir(&self.rootfs_dir(c))?,
            rel,
        })
    }

    /// `HEAD /containers/{id}/archive`: what `path` is (a symlink itself, not its target).
    pub fn path_stat(&self, c: &ContainerRecord, path: &str) -> Result<PathStat> {
        let view = self.view(c, path)?;
        let (parent, name) = open_parent(&view)?;
        let st = stat_at(parent.as_fd(), &name, path)?;
        Ok(stat_of(&parent, &name, &st, path))
    }

    /// `GET /containers/{id}/archive`: `path` (a file, a link, or a tree) as a tar stream whose
    /// top entry is the path's base name; returns its stat.
    pub fn archive_get(
        &self,
        c: &ContainerRecord,
        path: &str,
        out: &mut dyn Write,
    ) -> Result<PathStat> {
        let view = self.view(c, path)?;
        let (parent, name) = open_parent(&view)?;
        let st = as_container_sees(stat_at(parent.as_fd(), &name, path)?, c.id_map.as_ref());
        let stat = stat_of(&parent, &name, &st, path);
        let top = if name.as_bytes() == b"." {
            OsStr::new("/").to_owned()
        } else {
            name.clone()
        };
        let mut builder = tar::Builder::new(out);
        let entry_name = if top == "/" {
            PathBuf::from(".")
        } else {
            PathBuf::from(&top)
        };
        append_entry(
            &mut builder,
            parent.as_fd(),
            &name,
            &entry_name,
            &st,
            c.id_map.as_ref(),
        )?;
        builder.finish().map_err(|e| EngineError::Io {
            what: "write tar",
            path: path.into(),
            source: e,
        })?;
        Ok(stat)
    }

    /// `GET /containers/{id}/export`: the container's whole filesystem as a tar stream.
    pub fn export(&self, c: &ContainerRecord, out: &mut dyn Write) -> Result<()> {
        self.ensure_mounted(c)?;
        let root = nix::fcntl::open(
            &self.rootfs_dir(c),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .sys(|| format!("open {}", self.rootfs_dir(c).display()))?;
        let mut builder = tar::Builder::new(out);
        append_children(&mut builder, root.as_fd(), Path::new(""), c.id_map.as_ref())?;
        builder.finish().map_err(|e| EngineError::Io {
            what: "write tar",
            path: self.rootfs_dir(c),
            source: e,
        })?;
        Ok(())
    }

    /// `PUT /containers/{id}/archive`: unpacks a tar stream into directory `path` of the
    /// container. Owners are the container's root unless `keep_owners` (Docker's
    /// `copyUIDGID`); with `no_overwrite_dir_non_dir`, a directory never replaces a
    /// non-directory nor the other way round.
    pub fn archive_put(
        &self,
        c: &ContainerRecord,
        path: &str,
        input: &mut dyn Read,
        keep_owners: bool,
        no_overwrite_dir_non_dir: bool,
    ) -> Result<()> {
        let view = self.view(c, path)?;
        let dest = open_in_root(&view.root, &view.rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| match e {
                Errno::ENOENT => EngineError::NotFound(format!(
                    "Could not find the file {path} in container {}",
                    c.name
                )),
                Errno::ENOTDIR => invalid(format!("extraction point {path:?}"), "not a directory"),
                e => EngineError::Sys {
                    what: format!("open {path}"),
                    errno: e,
                },
            })?;
        if c.options.read_only && matches!(self.state(c).0, State::Running | State::Paused) {
            let target = Path::new("/").join(&view.rel);
            let on_volume = c
                .mounts
                .iter()
                .any(|m| m.rw && target.starts_with(&m.destination));
            if !on_volume {
                return Err(EngineError::Conflict(
                    "container rootfs is marked read-only".into(),
                ));
            }
        }
        let mut archive = tar::Archive::new(input);
        let entries = archive
            .entries()
            .map_err(|e| invalid("archive", e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid("archive", e.to_string()))?;
            extract_entry(
                &dest,
                &mut entry,
                keep_owners,
                no_overwrite_dir_non_dir,
                c.id_map.as_ref(),
            )?;
        }
        Ok(())
    }
}

/// Opens the parent of the view's path (inside the root) and returns it with the last name
/// (`.` for the root itself).
fn open_parent(view: &View) -> Result<(OwnedFd, std::ffi::OsString)> {
    let shown = Path::new("/").join(&view.rel).display().to_string();
    let not_found = |e: Errno| match e {
        Errno::ENOENT | Errno::ENOTDIR => {
            EngineError::NotFound(format!("Could not find the file {shown} in container"))
        }
        e => EngineError::Sys {
            what: format!("open {shown}"),
            errno: e,
        },
    };
    match (view.rel.parent(), view.rel.file_name()) {
        (Some(parent), Some(name)) => {
            let fd = open_in_root(&view.root, parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(not_found)?;
            Ok((fd, name.to_owned()))
        }
        _ => {
            let fd = open_in_root(
                &view.root,
                Path::new("."),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            )
            .map_err(not_found)?;
            Ok((fd, OsStr::new(".").to_owned()))
        }
    }
}

fn stat_at(dir: BorrowedFd<'_>, name: &OsStr, shown: &str) -> Result<FileStat> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| match e {
        Errno::ENOENT | Errno::ENOTDIR => {
            EngineError::NotFound(format!("Could not find the file {shown} in container"))
        }
        e => EngineError::Sys {
            what: format!("stat {shown}"),
            errno: e,
        },
    })
}

fn link_target(dir: BorrowedFd<'_>, name: &OsStr) -> Option<std::ffi::OsString> {
    nix::fcntl::readlinkat(dir, name).ok()
}

fn stat_of(parent: &OwnedFd, name: &OsStr, st: &FileStat, shown: &str) -> PathStat {
    let link = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        link_target(parent.as_fd(), name)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let shown_name = Path::new(shown)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_owned());
    PathStat {
        name: shown_name,
        size: st.st_size,
        mode: go_mode(st.st_mode),
        mtime: chrono::DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        link_target: link,
    }
}

fn tar_error(e: std::io::Error, name: &Path) -> EngineError {
    EngineError::Io {
        what: "write tar entry",
        path: name.to_owned(),
        source: e,
    }
}

/// `st` with the owners the container sees (a remapped container's files are START+n on the
/// host and n inside, and `docker cp`/`export` show them as inside).
fn as_container_sees(mut st: FileStat, owners: Option<&IdMap>) -> FileStat {
    if let Some(map) = owners {
        let (uid, gid) = map.container_owner(st.st_uid, st.st_gid);
        st.st_uid = uid;
        st.st_gid = gid;
    }
    st
}

/// A tar header for `st`.
fn header_for(st: &FileStat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Appends the object `name` of directory `dir` (already stat'ed) as `entry`, and its children
/// when it is a directory.
fn append_entry<W: Write>(
    b: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    entry: &Path,
    st: &FileStat,
    owners: Option<&IdMap>,
) -> Result<()> {
    let fmt = st.st_mode & libc::S_IFMT;
    match fmt {
        libc::S_IFDIR => {
            let mut h = header_for(st, tar::EntryType::Directory);
            b.append_data(&mut h, entry, std::io::empty())
                .map_err(|e| tar_error(e, entry))?;
            let child = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .sys(|| format!("open {}", entry.display()))?;
            append_children(b, child.as_fd(), entry, owners)?;
        }
        libc::S_IFREG => {
            let fd = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .sys(|| format!("open {}", entry.display()))?;
            let file = std::fs::File::from(fd);
            // The size of what is read now, not of the earlier stat.
            let len = file
                .metadata()
                .map(|m| m.len())
                .unwrap_or(st.st_size as u64);
            let mut h = header_for(st, tar::EntryType::Regular);
            h.set_size(len);
            b.append_data(&mut h, entry, file.take(len))
                .map_err(|e| tar_error(e, entry))?;
        }
        libc::S_IFLNK => {
            let target = link_target(dir, name).unwrap_or_default();
            let mut h = header_for(st, tar::EntryType::Symlink);
            b.append_link(&mut h, entry, Path::new(&target))
                .map_err(|e| tar_error(e, entry))?;
        }
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
            let kind = match fmt {
                libc::S_IFCHR => tar::EntryType::Char,
                libc::S_IFBLK => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            };
            let mut h = header_for(st, kind);
            if fmt != libc::S_IFIFO {
                let _ = h.set_device_major(libc::major(st.st_rdev));
                let _ = h.set_device_minor(libc::minor(st.st_rdev));
            }
            b.append_data(&mut h, entry, std::io::empty())
                .map_err(|e| tar_error(e, entry))?;
        }
        // Sockets are not archived (as Docker's).
        _ => {}
    }
    Ok(())
}

/// Appends every entry of the open directory `dir`, named below `prefix`.
fn append_children<W: Write>(
    b: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    prefix: &Path,
    owners: Option<&IdMap>,
) -> Result<()> {
    let dup = nix::unistd::dup(dir).sys(|| format!("dup {}", prefix.display()))?;
    let mut entries = nix::dir::Dir::from_fd(dup).sys(|| format!("read {}", prefix.display()))?;
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    for e in entries.iter() {
        let e = e.sys(|| format!("read {}", prefix.display()))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_owned());
        }
    }
    names.sort();
    for n in names {
        let st = match fstatat(dir, n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => as_container_sees(st, owners),
            // Gone meanwhile (a running container).
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                return Err(EngineError::Sys {
                    what: format!("stat {}", prefix.join(&n).display()),
                    errno: e,
                });
            }
        };
        append_entry(b, dir, &n, &prefix.join(&n), &st, owners)?;
    }
    Ok(())
}

/// One tar entry's path as safe components (no `..`, no absolute part).
fn entry_components(path: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(
                    format!("archive entry {}", path.display()),
                    "climbs out of the extraction point",
                ));
            }
        }
    }
    Ok(out)
}

fn c_name(n: &OsStr) -> Result<CString> {
    CString::new(n.as_bytes()).map_err(|_| invalid("archive entry", "a name with a NUL byte"))
}

/// Opens (creating) the directories of `parts` below `dest`, each with `O_NOFOLLOW`.
fn open_dirs(dest: &OwnedFd, parts: &[std::ffi::OsString]) -> Result<OwnedFd> {
    let mut dir = nix::unistd::dup(dest).sys(|| "dup".to_owned())?;
    for p in parts {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let next = match openat(dir.as_fd(), p.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                nix::sys::stat::mkdirat(
                    dir.as_fd(),
                    p.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                )
                .sys(|| format!("mkdir {}", p.to_string_lossy()))?;
                openat(dir.as_fd(), p.as_os_str(), flags, Mode::empty())
                    .sys(|| format!("open {}", p.to_string_lossy()))?
            }
            Err(e) => {
                return Err(EngineError::Sys {
                    what: format!("open {} (not a directory, or a link)", p.to_string_lossy()),
                    errno: e,
                });
            }
        };
        dir = next;
    }
    Ok(dir)
}

/// Removes what is at `name` in `dir` (a file, a link, or an empty directory) for a new entry.
fn clear_at(dir: BorrowedFd<'_>, name: &CStr, new_is_dir: bool, no_overwrite: bool) -> Result<()> {
    let Ok(st) = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
        return Ok(());
    };
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if no_overwrite && is_dir != new_is_dir {
        return Err(invalid(
            format!("archive entry {}", name.to_string_lossy()),
            if is_dir {
                "cannot overwrite a directory with a non-directory"
            } else {
                "cannot overwrite a non-directory with a directory"
            },
        ));
    }
    if is_dir {
        if new_is_dir {
            return Ok(());
        }
        return nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::RemoveDir)
            .sys(|| format!("remove {}", name.to_string_lossy()));
    }
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
        .sys(|| format!("remove {}", name.to_string_lossy()))
}

/// Creates one entry below `dest`.
fn extract_entry<R: Read>(
    dest: &OwnedFd,
    entry: &mut tar::Entry<'_, R>,
    keep_owners: bool,
    no_overwrite: bool,
    owners: Option<&IdMap>,
) -> Result<()> {
    let path = entry
        .path()
        .map_err(|e| invalid("archive entry name", e.to_string()))?
        .into_owned();
    let mut parts = entry_components(&path)?;
    let Some(last) = parts.pop() else {
        return Ok(());
    };
    let header = entry.header().clone();
    let kind = header.entry_type();
    let parent = open_dirs(dest, &parts)?;
    let name = c_name(&last)?;
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let (uid, gid) = if keep_owners {
        (
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        )
    } else {
        (0, 0)
    };
    // The container's ids as the host stores them (a remapped container's root is START).
    let (uid, gid) = owners.map_or((uid, gid), |m| (m.host_uid(uid), m.host_gid(gid)));
    let shown = || path.display().to_string();
    match kind {
        tar::EntryType::Directory => {
            clear_at(parent.as_fd(), &name, true, no_overwrite)?;
            match nix::sys::stat::mkdirat(
                parent.as_fd(),
                name.as_c_str(),
                Mode::from_bits_truncate(mode),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(EngineError::Sys {
                        what: format!("mkdir {}", shown()),
                        errno: e,
                    });
                }
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            clear_at(parent.as_fd(), &name, false, no_overwrite)?;
            let fd = openat(
                parent.as_fd(),
                name.as_c_str(),
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .sys(|| format!("create {}", shown()))?;
            let mut file = std::fs::File::from(fd);
            std::io::copy(entry, &mut file).io("write", path.clone())?;
        }
        tar::EntryType::Symlink => {
            clear_at(parent.as_fd(), &name, false, no_overwrite)?;
            let target = header.link_name().ok().flatten().ok_or_else(|| {
                invalid(
                    format!("archive entry {}", shown()),
                    "a link without a target",
                )
            })?;
            nix::unistd::symlinkat(target.as_ref(), parent.as_fd(), name.as_c_str())
                .sys(|| format!("symlink {}", shown()))?;
        }
        tar::EntryType::Link => {
            let target = header.link_name().ok().flatten().ok_or_else(|| {
                invalid(
                    format!("archive entry {}", shown()),
                    "a link without a target",
                )
            })?;
            let mut tparts = entry_components(&target)?;
            let tlast = tparts.pop().ok_or_else(|| {
                invalid(format!("archive entry {}", shown()), "an empty link target")
            })?;
            let tdir = open_dirs(dest, &tparts)?;
            clear_at(parent.as_fd(), &name, false, no_overwrite)?;
            nix::unistd::linkat(
                tdir.as_fd(),
                tlast.as_os_str(),
                parent.as_fd(),
                name.as_c_str(),
                AtFlags::empty(),
            )
            .sys(|| format!("link {}", shown()))?;
            return Ok(());
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            clear_at(parent.as_fd(), &name, false, no_overwrite)?;
            let (kind_bits, dev) = match kind {
                tar::EntryType::Char => (
                    nix::sys::stat::SFlag::S_IFCHR,
                    libc::makedev(
                        header.device_major().ok().flatten().unwrap_or(0),
                        header.device_minor().ok().flatten().unwrap_or(0),
                    ),
                ),
                tar::EntryType::Block => (
                    nix::sys::stat::SFlag::S_IFBLK,
                    libc::makedev(
                        header.device_major().ok().flatten().unwrap_or(0),
                        header.device_minor().ok().flatten().unwrap_or(0),
                    ),
                ),
                _ => (nix::sys::stat::SFlag::S_IFIFO, 0),
            };
            nix::sys::stat::mknodat(
                parent.as_fd(),
                name.as_c_str(),
                kind_bits,
                Mode::from_bits_truncate(mode),
                dev,
            )
            .sys(|| format!("mknod {}", shown()))?;
        }
        // PAX headers and GNU long names are read by the tar crate itself; others are skipped.
        _ => return Ok(()),
    }
    // Owner, mode and time, without following a link.
    nix::unistd::fchownat(
        parent.as_fd(),
        name.as_c_str(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .sys(|| format!("chown {}", shown()))?;
    if kind != tar::EntryType::Symlink {
        nix::sys::stat::fchmodat(
            parent.as_fd(),
            name.as_c_str(),
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .sys(|| format!("chmod {}", shown()))?;
    }
    if let Ok(mtime) = header.mtime() {
        let t = nix::sys::time::TimeSpec::new(mtime as i64, 0);
        let _ = nix::sys::stat::utimensat(
            parent.as_fd(),
            name.as_c_str(),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    Ok(())
}

/// The stat as the header value dockerd sends (base64 of the JSON).
pub fn stat_header(stat: &PathStat) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(stat).unwrap_or_default())
}

/// Reads a stat header back (the CLI's side).
pub fn parse_stat_header(value: &str) -> Option<PathStat> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_go_file_modes() {
        assert_eq!(go_mode(libc::S_IFDIR | 0o755), GO_DIR | 0o755);
        assert_eq!(go_mode(libc::S_IFLNK | 0o777), GO_SYMLINK | 0o777);
        assert_eq!(go_mode(libc::S_IFREG | 0o4755), GO_SETUID | 0o755);
    }

    #[test]
    fn entry_paths_cannot_climb() {
        assert!(entry_components(Path::new("../etc/passwd")).is_err());
        assert_eq!(
            entry_components(Path::new("./a/b")).unwrap(),
            vec![std::ffi::OsString::from("a"), "b".into()]
        );
        assert_eq!(normalise("/../../etc/x"), PathBuf::from("etc/x"));
    }
}
