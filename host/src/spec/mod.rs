//! An OCI bundle: its directory, its config.json parsed with `oci-spec`, and the checks that turn
//! a parsed config into one the envelope can build. Everything is validated here, once, before
//! any state, cgroup or process exists, so bad input leaves nothing behind.

mod default;
mod validate;

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

pub use default::default_spec_json;
pub use validate::{validate, validate_process};

use crate::error::{Error, Result, invalid};

/// A bundle loaded from disk and validated.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The parsed config.json.
    pub spec: Spec,
    /// The rootfs directory, absolute.
    pub rootfs: PathBuf,
    /// config.json byte for byte as it was parsed and validated: `create` saves it in the
    /// container's state directory for `exec`.
    pub config_json: Vec<u8>,
}

impl Bundle {
    /// Loads and validates the bundle in `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| invalid(format!("bundle {}: {}", dir.display(), io_reason(&e))))?;
        let config = dir.join("config.json");
        let bytes = std::fs::read(&config)
            .map_err(|e| invalid(format!("{}: {}", config.display(), io_reason(&e))))?;
        let spec =
            parse_config(&bytes).map_err(|e| invalid(format!("{}: {e}", config.display())))?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| invalid("config.json has no root (the rootfs path)"))?;
        let rootfs = dir.join(root.path());
        match std::fs::metadata(&rootfs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(invalid(format!(
                    "rootfs {} is not a directory",
                    rootfs.display()
                )));
            }
            Err(e) => {
                return Err(invalid(format!(
                    "rootfs {}: {}",
                    rootfs.display(),
                    io_reason(&e)
                )));
            }
        }
        let rootfs = std::fs::canonicalize(&rootfs)
            .map_err(|e| invalid(format!("rootfs {}: {e}", rootfs.display())))?;
        validate(&spec)?;
        Ok(Self {
            dir,
            spec,
            rootfs,
            config_json: bytes,
        })
    }

    /// The container process described by the config. Optional at `create`, required at
    /// `start` (config.md), so `None` is a container that can be created but never started.
    pub fn process(&self) -> Option<&oci_spec::runtime::Process> {
        self.spec.process().as_ref()
    }

    /// Whether the process asks for a terminal.
    pub fn wants_terminal(&self) -> bool {
        self.process().and_then(|p| p.terminal()).unwrap_or(false)
    }

    /// The linux section (validated to exist).
    pub fn linux(&self) -> &oci_spec::runtime::Linux {
        self.spec
            .linux()
            .as_ref()
            .expect("validate() guarantees a linux section")
    }
}

/// Parses config.json bytes, making serde's messages about unknown enum values short: it names the
/// bad value rather than listing the dozens of valid ones.
pub fn parse_config(bytes: &[u8]) -> Result<Spec> {
    serde_json::from_slice::<Spec>(bytes).map_err(|e| {
        let text = e.to_string();
        let text = match (text.find(", expected one of"), text.rfind(" at line")) {
            (Some(cut), Some(at)) => format!("{}{}", &text[..cut], &text[at..]),
            _ => text,
        };
        Error::InvalidConfig(text)
    })
}

/// "no such file or directory" rather than "No such file or directory (os error 2)".
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}
