//! The engine's error type: what failed, named for a user who typed a `capsa` command.

use std::path::PathBuf;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The image store refused or failed (bad image, unknown name, I/O in the store).
    #[error(transparent)]
    Image(#[from] capsa_images::Error),
    /// A registry refused or failed (pull, push, login).
    #[error(transparent)]
    Registry(#[from] capsa_images::registry::Error),
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
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// No volume has this name.
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// A path or another object does not exist (the message says what).
    #[error("{0}")]
    NotFound(String),
    /// No exec instance has this id.
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    /// The request conflicts with the current state (a name in use, an image in use, a
    /// container that runs).
    #[error("{0}")]
    Conflict(String),
    /// The container's monitor could not start its process; the text is the monitor's report.
    #[error("{0}")]
    StartFailed(String),
    /// A build step failed: a `RUN` exited non-zero (`code`), with Docker's message.
    #[error("{message}")]
    BuildStep { message: String, code: i32 },
    /// The network backend (netavark) failed to set up or tear down a container's network.
    #[error("{0}")]
    Network(String),
}

impl EngineError {
    /// The exit code Docker gives a container whose command could not be started: 127 when it
    /// does not exist, 126 when it cannot be invoked (not executable, a directory). dockerd
    /// decides it from the runtime's words, and so does the docker CLI; the runtime says them
    /// (`exec: "X": executable file not found in $PATH`, `…: permission denied`).
    pub fn command_exit_code(&self) -> Option<i32> {
        match self {
            EngineError::Runtime(e) => command_exit_code(&e.to_string()),
            EngineError::StartFailed(report) => command_exit_code(report),
            _ => None,
        }
    }

    /// Docker's HTTP status for this error: 404 for what does not exist, 400 for bad input,
    /// 409 for a conflict with the current state, 500 otherwise. The daemon answers with it and
    /// the CLI's exit codes follow it.
    pub fn http_status(&self) -> u16 {
        use capsa_images::Error as I;
        match self {
            EngineError::NoSuchContainer(_)
            | EngineError::NoSuchVolume(_)
            | EngineError::NoSuchExec(_)
            | EngineError::NotFound(_) => 404,
            EngineError::Invalid { .. } => 400,
            EngineError::Conflict(_) => 409,
            EngineError::Image(e) => match e {
                I::ImageNotFound(_) => 404,
                I::InvalidReference { .. } | I::AmbiguousId(_) | I::Invalid { .. } => 400,
                I::Conflict(_) => 409,
                _ => 500,
            },
            EngineError::Registry(e) => {
                use capsa_images::registry::Error as R;
                match e {
                    R::NotFound { .. } | R::NoMatchingPlatform { .. } => 404,
                    R::Unauthorized { .. } | R::LoginRefused { .. } => 401,
                    R::InvalidReference { .. } | R::InvalidPlatform(_) => 400,
                    R::Local(inner) if matches!(**inner, I::ImageNotFound(_)) => 404,
                    _ => 500,
                }
            }
            e if e.command_exit_code().is_some() => 400,
            EngineError::Runtime(crate::Error::NotFound(_)) => 404,
            EngineError::Runtime(crate::Error::WrongStatus { .. }) => 409,
            EngineError::Runtime(crate::Error::InvalidConfig(_)) => 400,
            _ => 500,
        }
    }
}

/// The rule behind [`EngineError::command_exit_code`], on a start error's text (what a client of
/// a daemon has): the docker CLI applies the same one.
pub fn command_exit_code(text: &str) -> Option<i32> {
    if !text.contains("exec: ") {
        return None;
    }
    if text.contains("executable file not found") || text.contains("no such file or directory") {
        Some(127)
    } else if text.contains("permission denied") || text.contains("is a directory") {
        Some(126)
    } else {
        None
    }
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
