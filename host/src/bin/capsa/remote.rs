//! The CLI as a client of a daemon (`-H`): Docker's Engine API over a unix socket or TCP.

use anyhow::{Result, bail};

/// TLS flags.
pub struct TlsFiles {
    pub verify: bool,
    pub ca: Option<std::path::PathBuf>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

/// A daemon connection.
pub struct Remote;

impl Remote {
    pub fn connect(host: &str, _tls: &TlsFiles) -> Result<Box<dyn super::backend::Backend>> {
        bail!("-H {host}: WIP")
    }
}
