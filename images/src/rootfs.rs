//! A container's root filesystem: overlayfs with the image's layers as lower dirs, the init
//! layer (the container's `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`) above them, and
//! the container's own upper dir on top. Nothing is copied: lower dirs are the store's.
//!
//! Mount options are limited to one page. [`mount`] passes each lower dir separately through
//! the new mount API (`fsconfig(FSCONFIG_SET_STRING, "lowerdir+", …)`, Linux 6.8+), which has no
//! such limit; on older kernels it uses `mount(2)` with absolute paths when they fit, else with
//! the store's short links (`l/<id>`) relative to the store root, as Docker does.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::store::Store;

/// The content of the init layer.
#[derive(Debug, Clone, Copy)]
pub struct InitFiles<'a> {
    /// `/etc/hosts`.
    pub hosts: &'a [u8],
    /// `/etc/hostname`.
    pub hostname: &'a [u8],
    /// `/etc/resolv.conf`.
    pub resolv_conf: &'a [u8],
}

/// Writes an init layer into `dir` (`dir/etc/{hosts,hostname,resolv.conf}`, mode 0644). It is a
/// lower dir, so `commit` of the upper dir never carries these files.
pub fn write_init_layer(dir: &Path, files: &InitFiles<'_>) -> Result<()> {
    let etc = dir.join("etc");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&etc)
        .ctx("mkdir", &etc)?;
    for (name, bytes) in [
        ("hosts", files.hosts),
        ("hostname", files.hostname),
        ("resolv.conf", files.resolv_conf),
    ] {
        let path = etc.join(name);
        fs::write(&path, bytes).ctx("write", &path)?;
    }
    Ok(())
}

/// Everything needed to mount a container's rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Lower dirs, top first: the init layer, then the image's layers from the top down.
    pub lower: Vec<PathBuf>,
    /// The same dirs as short paths relative to `short_base` (the init layer stays absolute).
    pub lower_short: Vec<PathBuf>,
    /// The directory the short paths are relative to (the store root).
    pub short_base: PathBuf,
    /// The container's read-write layer.
    pub upper: PathBuf,
    /// overlayfs's work dir (same filesystem as `upper`, empty).
    pub work: PathBuf,
}

/// The largest mount data `mount(2)` takes: one page, with its NUL.
pub const MOUNT_DATA_MAX: usize = 4095;

/// Escapes the characters overlayfs's option parser treats specially.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl MountPlan {
    fn data_with(&self, lower: &[PathBuf]) -> String {
        let lower: Vec<String> = lower.iter().map(|p| escape(p)).collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            escape(&self.upper),
            escape(&self.work)
        )
    }

    /// The `mount(2)` data with absolute paths.
    pub fn data(&self) -> String {
        self.data_with(&self.lower)
    }

    /// The `mount(2)` data with short paths, valid with `short_base` as the current directory.
    pub fn short_data(&self) -> String {
        self.data_with(&self.lower_short)
    }
}

/// Computes the mount plan for image `image` (name or id) with the given init layer, upper and
/// work dirs (absolute paths; the caller creates them).
pub fn plan(
    store: &Store,
    image: &str,
    init: &Path,
    upper: &Path,
    work: &Path,
) -> Result<MountPlan> {
    let info = store.inspect(image)?;
    let mut lower = vec![init.to_owned()];
    let mut lower_short = vec![init.to_owned()];
    for layer in info.layers.iter().rev() {
        let Some(diff_id) = &layer.diff_id else {
            continue;
        };
        let meta = store.layer_meta(diff_id)?;
        lower.push(layer.path.clone());
        lower_short.push(Path::new("l").join(meta.link));
    }
    Ok(MountPlan {
        lower,
        lower_short,
        short_base: store.root().to_owned(),
        upper: upper.to_owned(),
        work: work.to_owned(),
    })
}

/// How [`mount`] mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMethod {
    /// The new mount API when the kernel has `lowerdir+`, else `mount(2)`.
    Auto,
    /// `fsopen`/`fsconfig("lowerdir+")`/`fsmount`/`move_mount` (Linux 6.8+).
    NewApi,
    /// `mount(2)`: absolute paths if they fit in a page, else short paths with the store root
    /// as the current directory. That changes the process's cwd for the duration of the call:
    /// call it from a single-threaded process (the container's init).
    Classic,
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

fn cstring(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "contains NUL"))
}

pub(crate) fn mount_error(target: &Path, step: String) -> impl FnOnce(io::Error) -> Error + use<> {
    let target = target.to_owned();
    move |source| Error::Mount {
        target,
        step,
        source,
    }
}

fn fsconfig_string(fs: &OwnedFd, key: &str, value: &[u8]) -> io::Result<()> {
    let key = cstring(key.as_bytes())?;
    let value = cstring(value)?;
    // SAFETY: fs is an fsopen fd; key and value are NUL-terminated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether the error means the kernel has no `lowerdir+` (before 6.8) or no new mount API.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
    )
}

fn mount_new_api(plan: &MountPlan, target: &Path) -> Result<()> {
    let err = |step: &str| mount_error(target, step.to_owned());
    // SAFETY: the name is a NUL-terminated literal.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if fd < 0 {
        return Err(err("fsopen overlay")(io::Error::last_os_error()));
    }
    // SAFETY: fsopen returned a new fd that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    for dir in &plan.lower {
        fsconfig_string(&fs, "lowerdir+", dir.as_os_str().as_bytes()).map_err(mount_error(
            target,
            format!("fsconfig lowerdir+ {}", dir.display()),
        ))?;
    }
    fsconfig_string(&fs, "upperdir", plan.upper.as_os_str().as_bytes())
        .map_err(err("fsconfig upperdir"))?;
    fsconfig_string(&fs, "workdir", plan.work.as_os_str().as_bytes())
        .map_err(err("fsconfig workdir"))?;
    // SAFETY: fs is an fsopen fd; the other arguments are unused for CMD_CREATE.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    };
    if ret < 0 {
        return Err(err("fsconfig create")(io::Error::last_os_error()));
    }
    // SAFETY: fs is a configured fs context.
    let mfd = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mfd < 0 {
        return Err(err("fsmount")(io::Error::last_os_error()));
    }
    // SAFETY: fsmount returned a new fd that nothing else owns.
    let mnt = unsafe { OwnedFd::from_raw_fd(mfd as i32) };
    crate::sys::move_mount_to(mnt.as_fd(), target).map_err(err("move_mount"))
}

fn mount_data(target: &Path, data: &str) -> Result<()> {
    let err = |step: &str| mount_error(target, step.to_owned());
    let target_c = cstring(target.as_os_str().as_bytes()).map_err(err("target"))?;
    let data_c = cstring(data.as_bytes()).map_err(err("data"))?;
    // SAFETY: all strings are NUL-terminated and outlive the call.
    let ret = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            target_c.as_ptr(),
            c"overlay".as_ptr(),
            0,
            data_c.as_ptr().cast(),
        )
    };
    if ret < 0 {
        Err(err("mount")(io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

fn mount_classic(plan: &MountPlan, target: &Path) -> Result<()> {
    let data = plan.data();
    if data.len() <= MOUNT_DATA_MAX {
        return mount_data(target, &data);
    }
    let short = plan.short_data();
    if short.len() > MOUNT_DATA_MAX {
        return Err(mount_error(target, "mount data".to_owned())(
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes even with short layer names (limit {MOUNT_DATA_MAX}): too many layers",
                    short.len()
                ),
            ),
        ));
    }
    let target = std::path::absolute(target).ctx("absolute", target)?;
    // The short names are relative to the store root, so the mount needs that as its working
    // directory. A thread of its own with its own fs context (unshare(CLONE_FS)) changes it:
    // the process's working directory, shared by every thread of a daemon, never moves.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare(CLONE_FS) affects only the calling thread's fs context.
                if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                    return Err(io::Error::last_os_error())
                        .ctx("unshare(CLONE_FS)", &plan.short_base);
                }
                std::env::set_current_dir(&plan.short_base).ctx("chdir", &plan.short_base)?;
                mount_data(&target, &short)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(mount_error(&target, "mount thread".to_owned())(
                    io::Error::other("the mount thread panicked"),
                ))
            })
    })
}

/// Mounts the plan's overlay on `target`; returns the method used. The engine calls this in
/// the container's mount namespace; tests call it directly.
pub fn mount(plan: &MountPlan, target: &Path, method: MountMethod) -> Result<MountMethod> {
    match method {
        MountMethod::NewApi => mount_new_api(plan, target).map(|()| MountMethod::NewApi),
        MountMethod::Classic => mount_classic(plan, target).map(|()| MountMethod::Classic),
        // Before 6.8, overlayfs takes fsconfig keys through its legacy parser, which accepts
        // `lowerdir+` and only fails at create (EINVAL): ask the kernel's version first.
        MountMethod::Auto if !kernel_at_least(6, 8) => {
            mount_classic(plan, target).map(|()| MountMethod::Classic)
        }
        MountMethod::Auto => match mount_new_api(plan, target) {
            Ok(()) => Ok(MountMethod::NewApi),
            Err(Error::Mount { source, step, .. })
                if unsupported(&source)
                    && (step.starts_with("fsopen") || step.starts_with("fsconfig lowerdir+")) =>
            {
                mount_classic(plan, target).map(|()| MountMethod::Classic)
            }
            Err(e) => Err(e),
        },
    }
}

/// Whether the running kernel's release (`uname -r`, "6.1.0-56-amd64") is at least
/// `major.minor`. An unreadable release counts as new: the new API's own errors then decide.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: a zeroed utsname is a valid value for uname(2) to fill in.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a valid, writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return true;
    }
    // SAFETY: uname(2) NUL-terminates `release`, which lives as long as `name`.
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) };
    release_at_least(&release.to_string_lossy(), major, minor)
}

fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => true,
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::release_at_least;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(!release_at_least("6.1.0-56-amd64", 6, 8));
        assert!(release_at_least("6.8.0", 6, 8));
        assert!(release_at_least("6.18.44", 6, 8));
        assert!(release_at_least("7.0-rc1", 6, 8));
        assert!(!release_at_least("5.15.0-91-generic", 6, 8));
        assert!(release_at_least("garbage", 6, 8));
    }
}
