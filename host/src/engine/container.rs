//! Container records: `container.json` (what `create` decided, never changed afterwards) and
//! `exit.json` (the last exit), found by id, unique id prefix or name.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Engine;
use super::error::{EngineError, IoContext, Result, invalid};
use crate::runtime::Status;

/// What `create` decided about a container. Written once, atomically.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Unique among the engine's containers.
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image's id (config digest); the image is kept while the container exists.
    pub image_id: String,
    /// RFC 3339.
    pub created: String,
    /// The process's command line (for `ps`).
    pub args: Vec<String>,
    /// `-t`.
    pub tty: bool,
    /// `--rm`: the container is removed when it exits.
    pub auto_remove: bool,
    /// The cgroup path of the container (as `linux.cgroupsPath`).
    pub cgroup: String,
    /// Whether the payload is a wasm module (run through capsa-shim).
    pub wasm: bool,
    /// The container's config in the image config's terms (the image's, with the run flags
    /// applied: Entrypoint, Cmd, Env, WorkingDir, User, ...): what `commit` records, as
    /// Docker does. Null in records written before it existed.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Every option `create` took (inspect shows them as `HostConfig`; the monitor reads the
    /// restart policy, stdin and log settings from here).
    #[serde(default)]
    pub options: super::RunOptions,
    /// The user-namespace mapping it was created with (userns-remap), if any.
    #[serde(default)]
    pub id_map: Option<super::userns::IdMap>,
    /// What is mounted where (volumes, binds, tmpfs), as inspect's `Mounts`.
    #[serde(default)]
    pub mounts: Vec<MountPoint>,
    /// The healthcheck the monitor runs (the image's, overridden by the options).
    #[serde(default)]
    pub healthcheck: Option<super::spec::Healthcheck>,
    /// The container's hostname.
    #[serde(default)]
    pub hostname: String,
    /// Volumes made for this container alone (`-v /path`): removed with it by `rm -v` and
    /// `--rm`.
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    /// The bridge networks it is on (`--network NAME`, `network connect`), first = `eth0`.
    #[serde(default)]
    pub endpoints: Vec<super::network::attach::EndpointConfig>,
}

/// One mount of a container, as Docker's `MountPoint`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The host path.
    #[serde(rename = "Source")]
    pub source: String,
    #[serde(rename = "Destination")]
    pub destination: String,
    #[serde(rename = "Driver", default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(rename = "Mode")]
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    #[serde(rename = "Propagation")]
    pub propagation: String,
    /// An anonymous volume made for this container (removed with it by `rm -v` and `--rm`).
    #[serde(skip)]
    pub anonymous: bool,
}

/// The last exit of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code (128+n for signal n).
    pub code: i32,
    /// When it was started (RFC 3339).
    pub started: String,
    /// When it exited (RFC 3339).
    pub finished: String,
    /// Why it could not start (a restart that failed), Docker's `State.Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A container's status, derived as described in [`super`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Created by `capsa create`, never started (or being started).
    Created,
    /// The payload runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// Exited; its monitor waits out a back-off before starting it again (restart policy).
    Restarting,
    /// It ran and exited; `exit.json` says how.
    Exited,
}

impl State {
    /// Docker's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Restarting => "restarting",
            State::Exited => "exited",
        }
    }
}

/// Seconds since the epoch as RFC 3339 with nanoseconds, UTC (Docker's timestamps).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Writes `bytes` to `path` atomically (temp file + rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::sys::fs::write_atomic(path, bytes).map_err(EngineError::from)
}

/// 64 random hex digits from the kernel's random pool.
pub(crate) fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .io("read", "/dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks a `--name`: Docker's rule `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        || name.len() > 128
    {
        return Err(invalid(
            format!("container name {name:?}"),
            "use [a-zA-Z0-9][a-zA-Z0-9_.-]*",
        ));
    }
    Ok(())
}

impl Engine {
    /// Every container record, oldest first.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let dir = self.containers_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).io("read_dir", dir),
        };
        let mut records: Vec<ContainerRecord> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| read_json(&e.path().join("container.json")).ok())
            .collect();
        records.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(records)
    }

    /// The container an id, unique id prefix or name names.
    pub fn container(&self, name_or_id: &str) -> Result<ContainerRecord> {
        // A full id is one file to read, not a scan of every record.
        if name_or_id.len() == 64
            && name_or_id.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(c) =
                read_json::<ContainerRecord>(&self.container_dir(name_or_id).join("container.json"))
        {
            return Ok(c);
        }
        let all = self.containers()?;
        if let Some(c) = all
            .iter()
            .find(|c| c.id == name_or_id || c.name == name_or_id)
        {
            return Ok(c.clone());
        }
        let hex = !name_or_id.is_empty() && name_or_id.bytes().all(|b| b.is_ascii_hexdigit());
        let matches: Vec<&ContainerRecord> = all
            .iter()
            .filter(|c| hex && c.id.starts_with(name_or_id))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(EngineError::NoSuchContainer(name_or_id.to_owned())),
            _ => Err(invalid(
                format!("container id prefix {name_or_id:?}"),
                "matches several containers",
            )),
        }
    }

    /// The container's directory (the bundle).
    pub fn bundle_dir(&self, c: &ContainerRecord) -> PathBuf {
        self.container_dir(&c.id)
    }

    /// The overlay mount point of a container.
    pub fn rootfs_dir(&self, c: &ContainerRecord) -> PathBuf {
        self.container_dir(&c.id).join("rootfs")
    }

    /// The container's read-write layer.
    pub fn upper_dir(&self, c: &ContainerRecord) -> PathBuf {
        self.container_dir(&c.id).join("upper")
    }

    /// The Docker json-file log.
    pub fn log_path(&self, c: &ContainerRecord) -> PathBuf {
        self.container_dir(&c.id).join(format!("{}-json.log", c.id))
    }

    /// The last exit, if the container has exited since its last start.
    pub fn exit_record(&self, c: &ContainerRecord) -> Option<ExitRecord> {
        read_json(&self.container_dir(&c.id).join("exit.json")).ok()
    }

    /// Records an exit.
    pub(crate) fn write_exit(&self, c: &ContainerRecord, exit: &ExitRecord) -> Result<()> {
        let bytes = serde_json::to_vec(exit).map_err(|e| invalid("exit record", e.to_string()))?;
        write_atomic(&self.container_dir(&c.id).join("exit.json"), &bytes)
    }

    /// Removes the last exit (the container starts again).
    pub(crate) fn clear_exit(&self, c: &ContainerRecord) {
        let _ = std::fs::remove_file(self.container_dir(&c.id).join("exit.json"));
    }

    /// The runtime's view: the init's pid and status, if a runtime container exists.
    pub fn runtime_status(&self, c: &ContainerRecord) -> Option<(i32, Status)> {
        let r = self.runtime.record(&c.id)?;
        Some((r.pid, r.status()))
    }

    /// The container's status and the init's pid (0 when not running).
    pub fn state(&self, c: &ContainerRecord) -> (State, i32) {
        match self.runtime_status(c) {
            Some((pid, Status::Running)) => (State::Running, pid),
            Some((pid, Status::Paused)) => (State::Paused, pid),
            Some((_, Status::Created | Status::Creating)) => (State::Created, 0),
            // Stopped but not yet reaped by its monitor, or no runtime container at all.
            _ if self.run_state(c).restarting && self.monitor_alive(c) => (State::Restarting, 0),
            Some((_, Status::Stopped)) => (State::Exited, 0),
            None if self.exit_record(c).is_some() => (State::Exited, 0),
            None => (State::Created, 0),
        }
    }
}

/// Reads and parses a JSON file.
/// Opens (making it if needed) and flocks `path`: the engine's cross-process locks.
pub(crate) fn lock_file(
    path: &Path,
    how: nix::fcntl::FlockArg,
) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .io("open", path)?;
    nix::fcntl::Flock::lock(file, how).map_err(|(_, e)| EngineError::Sys {
        what: format!("flock {}", path.display()),
        errno: e,
    })
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).io("read", path)?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(path.display().to_string(), e.to_string()))
}
