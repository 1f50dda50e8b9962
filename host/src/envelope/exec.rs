//! The container's program: its path found in the container's PATH, its argv and environment, made
//! ready before the container waits for `start` so a missing binary fails `create`, as with runc.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::execve;
use oci_spec::runtime::Process;

use crate::error::{Error, Result, invalid};
use crate::wasm::ShimExec;

pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything execve needs, as C strings.
pub struct Program {
    /// The resolved executable path.
    pub path: PathBuf,
    path_c: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

impl Program {
    /// Resolves `process` in the current root (after pivot_root) and current directory.
    pub fn resolve(process: &Process) -> Result<Self> {
        let args = process.args().as_deref().unwrap_or_default();
        let arg0 = args
            .first()
            .ok_or_else(|| invalid("process.args is empty"))?;
        let mut env: Vec<String> = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", home_of(process.user().uid())));
        }
        let search_path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let path = find_executable(arg0, search_path)?;
        let cstr =
            |s: &str| CString::new(s).map_err(|_| invalid(format!("{s:?} contains a NUL byte")));
        Ok(Self {
            path_c: cstr(&path.to_string_lossy())?,
            path,
            args: args.iter().map(|a| cstr(a)).collect::<Result<_>>()?,
            env: env.iter().map(|e| cstr(e)).collect::<Result<_>>()?,
        })
    }

    /// Replaces this process with the program; returns only on failure ([`exec_error`]).
    pub fn exec(&self) -> Error {
        match execve(&self.path_c, &self.args, &self.env) {
            Err(e) => exec_error(&self.path.display().to_string(), e),
        }
    }
}

/// What the container's process becomes. Whether it is wasm is decided before the fork
/// (`wasm::prepare`); a native program is resolved in the container, like runc does.
pub enum Payload<'a> {
    /// A native program, exec'd with execve.
    Native(Program),
    /// A wasm program, run by `capsa-shim` exec'd from its descriptor.
    Wasm(&'a ShimExec),
}

impl<'a> Payload<'a> {
    /// The wasm payload when there is one, else `process` resolved as a native program (in the
    /// current root and directory).
    pub fn resolve(process: &Process, wasm: Option<&'a ShimExec>) -> Result<Self> {
        match wasm {
            Some(shim) => Ok(Self::Wasm(shim)),
            None => Program::resolve(process).map(Self::Native),
        }
    }

    /// Replaces this process with the payload; returns only on failure.
    pub fn exec(&self) -> Error {
        match self {
            Self::Native(program) => program.exec(),
            Self::Wasm(shim) => shim.exec(),
        }
    }
}

/// Why `program` could not be exec'd, in runc's (and Go's) words, `exec: "PATH": permission
/// denied`: the docker CLI and podman turn them into exit codes 126 and 127.
fn exec_error(program: &str, errno: Errno) -> Error {
    Error::Step {
        step: format!("exec: {program:?}"),
        message: errno.desc().to_lowercase(),
    }
}

/// Finds `arg0` like execvp: a name with a slash is used as is, anything else is looked up in PATH.
fn find_executable(arg0: &str, search_path: &str) -> Result<PathBuf> {
    let is_executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if arg0.contains('/') {
        let path = PathBuf::from(arg0);
        return match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Err(exec_error(arg0, Errno::EISDIR)),
            Ok(_) => Ok(path),
            Err(e) => Err(exec_error(
                arg0,
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )),
        };
    }
    search_path
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(arg0))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| Error::Step {
            step: format!("exec: {arg0:?}"),
            message: "executable file not found in $PATH".into(),
        })
}

/// The home directory of `uid` from the container's /etc/passwd, or `/`.
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() >= 6 && fields[2].parse::<u32>().ok() == Some(uid))
                    .then(|| fields[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".to_string())
}
