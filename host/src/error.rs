//! The library's error type. Every variant carries enough context (the syscall, the path, the
//! container id, the config field) for a user to see what went wrong without a debugger.

use std::fmt::Display;

use nix::errno::Errno;

/// What went wrong in the envelope or the runtime. The `Display` of each variant is complete on
/// its own (it includes the cause), because errors also cross process boundaries as text: the
/// container's init reports its failure to the runtime over the sync socket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed; `what` names the call and the path or id it acted on.
    #[error("{what}: {errno}")]
    Sys { what: String, errno: Errno },
    /// An I/O operation failed; `what` names the operation and its path.
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    /// config.json (or another input) asks for something invalid or unsupported.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// No container with this id exists under the state root.
    /// Callers (containerd, podman) match the words `does not exist`: keep them.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// A container with this id already exists under the state root.
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    /// The container is not in a status the requested operation accepts.
    #[error("container {id:?} is {status}: cannot {action}")]
    WrongStatus {
        id: String,
        status: String,
        action: &'static str,
    },
    /// A step of container setup failed; `step` says which one.
    #[error("{step}: {message}")]
    Step { step: String, message: String },
    /// A lifecycle hook failed.
    #[error("{hook} hook {path}: {message}")]
    Hook {
        hook: &'static str,
        path: String,
        message: String,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a description of the operation to low-level errors, so every error says what it was
/// doing: `mount("proc", "/proc")`, not just `EPERM`.
pub trait Context<T> {
    /// Wraps the error with a description computed only on failure.
    fn with(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, Errno> {
    fn with(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Sys {
            what: what(),
            errno,
        })
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn with(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|cause| Error::Io {
            what: what(),
            cause,
        })
    }
}

impl<T> Context<T> for Result<T> {
    fn with(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Step {
            step: what(),
            message: e.to_string(),
        })
    }
}

/// Shorthand for an [`Error::InvalidConfig`].
pub fn invalid(message: impl Display) -> Error {
    Error::InvalidConfig(message.to_string())
}
