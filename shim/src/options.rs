//! The shim's command line, parsed once into [`Options`] that can only hold valid values. The
//! host builds it (see the crate docs for the contract); nothing here reads the environment.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::{FeatureError, Features};

/// A command line the shim cannot run with. The host always builds a valid one, so this means
/// the host and the shim disagree about the contract.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// An option the contract does not define.
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    /// An option given last, without its value.
    #[error("option {0} needs a value")]
    MissingValue(&'static str),
    /// A value that does not parse.
    #[error("{option} {value:?}: {reason}")]
    BadValue {
        /// The option.
        option: &'static str,
        /// Its value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--artifact-fd` was not given.
    #[error("--artifact-fd is required")]
    NoArtifact,
    /// No `--` and program arguments.
    #[error("expected `-- ARG0 [ARGS...]` after the options")]
    NoProgram,
    /// An argument that is not UTF-8 (WASI arguments are strings).
    #[error("argument {0:?} is not UTF-8")]
    NotUtf8(OsString),
    /// A bad `--wasm-feature`.
    #[error(transparent)]
    Feature(#[from] FeatureError),
}

/// Whether the artifact holds a core module (WASI preview 1) or a component (preview 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// `Engine::precompile_module` output; run through `_start` with WASI preview 1.
    Module,
    /// `Engine::precompile_component` output; run as a `wasi:cli/command`.
    Component,
}

/// A directory the module gets preopened: `--preopen GUEST=HOST[:ro|:rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The name the module sees (`/` for the container's root).
    pub guest: String,
    /// The directory in the shim's (the container's) filesystem.
    pub host: PathBuf,
    /// Whether the module may create, write and remove files under it.
    pub writable: bool,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The inherited read-only descriptor of the precompiled artifact (at least 3: 0-2 are stdio).
    pub artifact_fd: RawFd,
    /// What the artifact holds.
    pub kind: ArtifactKind,
    /// Preopened directories, in the order given.
    pub preopens: Vec<Preopen>,
    /// The most bytes one linear memory may grow to.
    pub memory_limit: Option<usize>,
    /// The wall-clock time the module may run (from the shim's start).
    pub deadline: Option<Duration>,
    /// Wasm features on top of the defaults; must equal what the host compiled with.
    pub features: Features,
    /// Whether WASI sockets may use the container's network.
    pub inherit_network: bool,
    /// The module's arguments, `ARG0` first, exactly as the container's `process.args`.
    pub args: Vec<String>,
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, UsageError> {
        let mut args = args.into_iter();
        let mut artifact_fd = None;
        let mut kind = ArtifactKind::Module;
        let mut preopens = Vec::new();
        let mut memory_limit = None;
        let mut deadline = None;
        let mut features = Features::default();
        let mut inherit_network = false;
        let mut program = None;
        while let Some(arg) = args.next() {
            let arg = utf8(arg)?;
            let mut value = |option: &'static str| {
                args.next()
                    .ok_or(UsageError::MissingValue(option))
                    .and_then(utf8)
            };
            match arg.as_str() {
                "--artifact-fd" => {
                    let fd = value("--artifact-fd")?;
                    artifact_fd = Some(parse_fd(&fd)?);
                }
                "--component" => kind = ArtifactKind::Component,
                "--preopen" => preopens.push(parse_preopen(&value("--preopen")?)?),
                "--memory-limit" => {
                    let bytes = value("--memory-limit")?;
                    memory_limit = Some(positive("--memory-limit", &bytes)?);
                }
                "--deadline-ms" => {
                    let ms = value("--deadline-ms")?;
                    deadline = Some(Duration::from_millis(positive("--deadline-ms", &ms)? as u64));
                }
                "--wasm-feature" => {
                    features.apply(&value("--wasm-feature")?)?;
                }
                "--inherit-network" => inherit_network = true,
                "--" => {
                    program = Some(args.map(utf8).collect::<Result<Vec<_>, _>>()?);
                    break;
                }
                _ => return Err(UsageError::UnknownOption(arg)),
            }
        }
        let args = program
            .filter(|p| !p.is_empty())
            .ok_or(UsageError::NoProgram)?;
        Ok(Self {
            artifact_fd: artifact_fd.ok_or(UsageError::NoArtifact)?,
            kind,
            preopens,
            memory_limit,
            deadline,
            features,
            inherit_network,
            args,
        })
    }

    /// The module's name for messages: `ARG0` as the container sees it.
    pub fn program(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("wasm")
    }
}

fn utf8(arg: OsString) -> Result<String, UsageError> {
    arg.into_string().map_err(UsageError::NotUtf8)
}

fn parse_fd(value: &str) -> Result<RawFd, UsageError> {
    match value.parse::<RawFd>() {
        Ok(fd) if fd >= 3 => Ok(fd),
        _ => Err(UsageError::BadValue {
            option: "--artifact-fd",
            value: value.to_string(),
            reason: "expected a descriptor number of 3 or more".into(),
        }),
    }
}

/// A number above 0 that fits a `usize`.
fn positive(option: &'static str, value: &str) -> Result<usize, UsageError> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UsageError::BadValue {
            option,
            value: value.to_string(),
            reason: "expected a whole number above 0".into(),
        }),
    }
}

/// `GUEST=HOST[:ro|:rw]`; without a suffix the directory is writable, as a mount without `ro`.
fn parse_preopen(value: &str) -> Result<Preopen, UsageError> {
    let bad = |reason: &str| UsageError::BadValue {
        option: "--preopen",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (guest, rest) = value
        .split_once('=')
        .ok_or_else(|| bad("expected GUEST=HOST[:ro|:rw]"))?;
    let (host, writable) = if let Some(host) = rest.strip_suffix(":ro") {
        (host, false)
    } else if let Some(host) = rest.strip_suffix(":rw") {
        (host, true)
    } else {
        (rest, true)
    };
    if guest.is_empty() || host.is_empty() {
        return Err(bad("GUEST and HOST must not be empty"));
    }
    Ok(Preopen {
        guest: guest.to_string(),
        host: PathBuf::from(host),
        writable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, UsageError> {
        Options::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn the_hosts_full_command_line_parses() {
        let options = parse(&[
            "--artifact-fd",
            "7",
            "--component",
            "--preopen",
            "/=/:ro",
            "--preopen",
            "/data=/data:rw",
            "--memory-limit",
            "67108864",
            "--deadline-ms",
            "250",
            "--wasm-feature",
            "simd=off",
            "--inherit-network",
            "--",
            "/app.wasm",
            "--flag",
            "x y",
        ])
        .expect("valid");
        assert_eq!(options.artifact_fd, 7);
        assert_eq!(options.kind, ArtifactKind::Component);
        assert_eq!(
            options.preopens,
            [
                Preopen {
                    guest: "/".into(),
                    host: "/".into(),
                    writable: false
                },
                Preopen {
                    guest: "/data".into(),
                    host: "/data".into(),
                    writable: true
                },
            ]
        );
        assert_eq!(options.memory_limit, Some(64 << 20));
        assert_eq!(options.deadline, Some(Duration::from_millis(250)));
        assert_eq!(options.features.to_string(), "simd=off");
        assert!(options.inherit_network);
        assert_eq!(options.args, ["/app.wasm", "--flag", "x y"]);
        assert_eq!(options.program(), "/app.wasm");
    }

    #[test]
    fn the_short_form_has_defaults() {
        let options =
            parse(&["--artifact-fd", "3", "--preopen", "/=/", "--", "m.wasm"]).expect("valid");
        assert_eq!(options.kind, ArtifactKind::Module);
        assert!(options.preopens[0].writable);
        assert_eq!(options.memory_limit, None);
        assert_eq!(options.deadline, None);
        assert!(!options.inherit_network);
    }

    #[test]
    fn arguments_after_the_separator_are_the_programs_even_if_they_look_like_options() {
        let options =
            parse(&["--artifact-fd", "3", "--", "p", "--component", "--"]).expect("valid");
        assert_eq!(options.kind, ArtifactKind::Module);
        assert_eq!(options.args, ["p", "--component", "--"]);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for (args, expected) in [
            (&["--", "p"][..], "--artifact-fd is required"),
            (&["--artifact-fd", "3"][..], "expected `-- ARG0"),
            (&["--artifact-fd", "3", "--"][..], "expected `-- ARG0"),
            (&["--artifact-fd", "1", "--", "p"][..], "3 or more"),
            (&["--artifact-fd"][..], "needs a value"),
            (
                &["--artifact-fd", "3", "--memory-limit", "0", "--", "p"][..],
                "above 0",
            ),
            (
                &["--artifact-fd", "3", "--deadline-ms", "x", "--", "p"][..],
                "above 0",
            ),
            (
                &["--artifact-fd", "3", "--preopen", "/", "--", "p"][..],
                "GUEST=HOST",
            ),
            (
                &["--artifact-fd", "3", "--wasm-feature", "nope=on", "--", "p"][..],
                "unknown wasm feature",
            ),
            (
                &["--artifact-fd", "3", "--verbose", "--", "p"][..],
                "unknown option",
            ),
        ] {
            let error = parse(args).expect_err("invalid").to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}
