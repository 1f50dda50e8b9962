//! The engine's error type: what failed, named for a user who typed a `capsa` command.

use std::path::PathBuf;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The image store refused or failed (bad image, unknown name, I/O in the store).
    #[error(transparent)]
    Image(#[from] capsa_images::Error),
    /// The runtime library failed to create, start, signal or delete the container.
    #[error(transparent)]
    Runtime(#[from] crate::Error),
    /// A file operation of the engine failed; `what` names the operation.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {errno}")]
    Sys {
        what: String,
        errno: nix::errno::Errno,
    },
    /// A flag or argument is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    /// No container has this id, id prefix or name.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// The request conflicts with the current state (a name in use, an image in use, a
    /// container that runs).
    #[error("{0}")]
    Conflict(String),
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Builds an [`EngineError::Invalid`].
pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Attaches the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    /// Names the operation and the path it acted on.
    fn io(self, what: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, what: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| EngineError::Io {
            what,
            path: path.into(),
            source,
        })
    }
}

/// Attaches the call to an errno.
pub(crate) trait SysContext<T> {
    /// Names the system call and what it acted on.
    fn sys(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn sys(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| EngineError::Sys {
            what: what(),
            errno,
        })
    }
}
