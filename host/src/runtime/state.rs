//! Container state on disk: one directory per container under the state root (`--root`), holding
//! `state.json`, the `config.json` create validated (for `exec`) and, while the container waits to
//! be started, its start socket. Every command that changes a container holds an exclusive `flock`
//! on its directory, so two commands acting on one container at once are serialised, and every
//! write is atomic (write + rename).

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, open};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::error::{Context, Error, Result, invalid};
use crate::sys::{fs::write_atomic, proc};

/// The OCI lifecycle status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created: the record exists but setup has not finished.
    Creating,
    /// Set up and waiting for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The process has exited.
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        })
    }
}

/// What capsa keeps about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The OCI runtime spec version of the bundle.
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// The container's init process, as seen from the runtime's pid namespace.
    pub pid: i32,
    /// The init's start time, to tell it from a later process that reuses its pid.
    pub init_start_time: u64,
    /// The status last recorded by a command; [`Record::status`] derives the live one.
    pub recorded_status: Status,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The rootfs directory.
    pub rootfs: PathBuf,
    /// When the container was created, RFC 3339 with nanoseconds.
    pub created: String,
    /// The bundle's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The container's cgroup.
    pub cgroup: Option<Cgroup>,
    /// The bundle's hooks; poststop hooks run at delete, after the bundle may have changed.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

/// The state JSON of the OCI runtime spec, as `state` prints it and hooks receive it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: Status,
    pub pid: i32,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
    pub owner: &'a str,
}

impl Record {
    /// The live status: the recorded one, corrected by whether the init still runs and whether
    /// its cgroup is frozen.
    pub fn status(&self) -> Status {
        match self.recorded_status {
            Status::Stopped => Status::Stopped,
            Status::Creating => Status::Creating,
            _ if !proc::is_same_live_process(self.pid, self.init_start_time) => Status::Stopped,
            Status::Created => Status::Created,
            _ if self.is_frozen() => Status::Paused,
            _ => Status::Running,
        }
    }

    fn is_frozen(&self) -> bool {
        let Some(cgroup) = &self.cgroup else {
            return false;
        };
        // Only the freezer hierarchy (v1) and the unified one (v2) can say: reading the file in
        // every other hierarchy would cost a failed open each (`ps` asks for every container).
        let v1 = cgroup
            .dirs
            .iter()
            .filter(|d| {
                d.components()
                    .any(|c| c.as_os_str().to_string_lossy().contains("freezer"))
            })
            .any(|dir| {
                std::fs::read_to_string(dir.join("freezer.state"))
                    .is_ok_and(|s| s.trim() == "FROZEN")
            });
        v1 || cgroup.unified.as_ref().is_some_and(|dir| {
            std::fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        })
    }

    /// The OCI state of the container with `status` (pid 0 once stopped, as runc reports).
    pub fn oci_state(&self, status: Status) -> OciState<'_> {
        OciState {
            oci_version: &self.oci_version,
            id: &self.id,
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            annotations: &self.annotations,
            owner: "",
        }
    }

    /// The OCI state as JSON with the live status.
    pub fn oci_state_json(&self) -> String {
        serde_json::to_string(&self.oci_state(self.status())).unwrap_or_default()
    }
}

/// The state root: the directory holding one directory per container.
#[derive(Debug, Clone)]
pub struct StateRoot {
    dir: PathBuf,
    /// Where compiled wasm modules are cached; `<dir>/.wasm-cache` unless set.
    wasm_cache: Option<PathBuf>,
}

/// A container's state directory, locked for the lifetime of this value.
pub struct ContainerDir {
    path: PathBuf,
    _lock: Flock<OwnedFd>,
}

impl StateRoot {
    /// The state root at `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            wasm_cache: None,
        }
    }

    /// The same state root with its wasm cache at `dir`: the engine keeps compiled modules in its
    /// store (which survives a reboot, unlike a state root under /run), next to the images they
    /// come from.
    pub fn with_wasm_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.wasm_cache = Some(dir.into());
        self
    }

    /// The directory of the state root.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where compiled seccomp programs are cached. Its name is not a valid container id, so
    /// `list` and id lookups never mistake it for a container.
    pub fn seccomp_cache(&self) -> PathBuf {
        self.dir.join(".seccomp-cache")
    }

    /// Where compiled wasm modules are cached (`wasm::compile`). It holds no `state.json`, so
    /// `list` skips it.
    pub fn wasm_cache(&self) -> PathBuf {
        self.wasm_cache
            .clone()
            .unwrap_or_else(|| self.dir.join(".wasm-cache"))
    }

    /// Creates and locks the directory for a new container `id`.
    pub fn create(&self, id: &str) -> Result<ContainerDir> {
        validate_id(id)?;
        std::fs::create_dir_all(&self.dir)
            .with(|| format!("create state root {}", self.dir.display()))?;
        let path = self.dir.join(id);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.to_string()));
            }
            Err(e) => return Err(e).with(|| format!("create {}", path.display())),
        }
        lock(path)
    }

    /// Locks the directory of container `id` and reads its record.
    pub fn open(&self, id: &str) -> Result<(ContainerDir, Record)> {
        validate_id(id)?;
        let path = self.dir.join(id);
        let dir = match lock(path) {
            Err(Error::Sys {
                errno: Errno::ENOENT,
                ..
            }) => return Err(Error::NotFound(id.to_string())),
            other => other?,
        };
        // A concurrent delete may have removed the directory while we waited for the lock.
        let record = dir.read().map_err(|_| Error::NotFound(id.to_string()))?;
        Ok((dir, record))
    }

    /// Reads one container's record without locking (a reader that only looks).
    pub fn record(&self, id: &str) -> Option<Record> {
        validate_id(id).ok()?;
        read_record(&self.dir.join(id).join("state.json")).ok()
    }

    /// Reads every container's record without locking (for `list`); unreadable entries, such as a
    /// container still being created, are skipped.
    pub fn list(&self) -> Result<Vec<Record>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with(|| format!("read {}", self.dir.display())),
        };
        let mut records: Vec<Record> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| read_record(&e.path().join("state.json")).ok())
            .collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }
}

impl ContainerDir {
    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked directory's descriptor, for paths through /proc/self/fd that stay short.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
    }

    /// Reads the record.
    pub fn read(&self) -> Result<Record> {
        read_record(&self.path.join("state.json"))
    }

    /// Writes the record atomically.
    pub fn write(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| invalid(e.to_string()))?;
        write_atomic(&self.path.join("state.json"), &bytes)
    }

    /// Saves the container's config.json as `create` validated it, byte for byte, for `exec`.
    ///
    /// `exec` builds its process from the container's process (env, cwd, user, capabilities,
    /// rlimits) and applies the container's seccomp profile, so it needs the config as it was at
    /// create, not as the bundle may read later. It is a file beside state.json rather than part of
    /// the [`Record`] because a seccomp profile can be tens of kilobytes and every command (`state`,
    /// `list`, `kill`…) reads the record; this way only `exec` parses it, and `create` pays one
    /// write of bytes it already holds.
    pub fn save_config(&self, config_json: &[u8]) -> Result<()> {
        write_atomic(&self.path.join(CONFIG_SNAPSHOT), config_json)
    }

    /// The config saved by [`ContainerDir::save_config`], parsed (it was validated at create).
    pub fn load_config(&self) -> Result<oci_spec::runtime::Spec> {
        let path = self.path.join(CONFIG_SNAPSHOT);
        let bytes = std::fs::read(&path).with(|| format!("read {}", path.display()))?;
        crate::spec::parse_config(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.path).with(|| format!("remove {}", self.path.display()))
    }
}

/// The config.json snapshot in a container's directory (see [`ContainerDir::save_config`]).
const CONFIG_SNAPSHOT: &str = "config.json";

fn lock(path: PathBuf) -> Result<ContainerDir> {
    let fd = open(
        &path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with(|| format!("open {}", path.display()))?;
    let lock = Flock::lock(fd, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with(|| format!("lock {}", path.display()))?;
    Ok(ContainerDir { path, _lock: lock })
}

fn read_record(path: &Path) -> Result<Record> {
    let bytes = std::fs::read(path).with(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Container ids are file names under the state root: letters, digits and `_+-.`, as runc allows.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "container id {id:?} is invalid: use letters, digits and _+-."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_the_root_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["abc", "a.b-c_d+e", "0123456789abcdef"] {
            assert!(validate_id(good).is_ok(), "{good:?} refused");
        }
    }
}
