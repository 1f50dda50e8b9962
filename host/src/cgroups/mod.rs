//! A container's cgroup: where it lives on this host's cgroup layout, putting processes in it,
//! listing them, and removing it. The host may be cgroup v1, pure v2, or hybrid (v1 controllers
//! with a v2 hierarchy beside them, as on this project's CI); [`Layout`] finds out which, once.

mod device_filter;
mod freezer;
mod layout;
mod resources;
pub mod stats;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

pub(crate) use layout::unescape as unescape_mountinfo;
pub use layout::{Hierarchy, Layout};
pub use resources::effective_device_rules;

use crate::error::{Context, Result};

fn layout_pairs<'a>(
    dirs: &'a [PathBuf],
    hierarchies: &'a [Hierarchy],
) -> impl Iterator<Item = (&'a Hierarchy, &'a PathBuf)> {
    hierarchies.iter().zip(dirs)
}

/// A new v1 cpuset cgroup starts with no cpus and no memory nodes, and refuses processes until it
/// has some: give each new level of `dir` its parent's, as runc does.
fn inherit_cpuset(mount_point: &Path, dir: &Path) -> Result<()> {
    let Ok(rel) = dir.strip_prefix(mount_point) else {
        return Ok(());
    };
    let mut parent = mount_point.to_path_buf();
    for component in rel.components() {
        let child = parent.join(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = std::fs::read_to_string(child.join(file)).unwrap_or_default();
            if current.trim().is_empty() {
                let value = std::fs::read_to_string(parent.join(file))
                    .with(|| format!("read {}", parent.join(file).display()))?;
                std::fs::write(child.join(file), value.trim())
                    .with(|| format!("write {}", child.join(file).display()))?;
            }
        }
        parent = child;
    }
    Ok(())
}

/// On cgroup v2 a controller's files (`memory.max`, `pids.max`, ...) exist in a cgroup only when
/// its parent delegates the controller in `cgroup.subtree_control`. Every available controller
/// is delegated down each level above `dir`, as runc does, so a nested cgroup (`/capsa/<id>`)
/// gets them. Best effort: a level that refuses (processes in it) leaves the controller out,
/// and applying a limit then names the missing file.
fn delegate_controllers(mount_point: &Path, dir: &Path) {
    let Ok(rel) = dir.strip_prefix(mount_point) else {
        return;
    };
    let mut level = mount_point.to_path_buf();
    for component in rel.components() {
        let available =
            std::fs::read_to_string(level.join("cgroup.controllers")).unwrap_or_default();
        if available.trim().is_empty() {
            // Nothing to delegate here, so nothing below either (a hybrid host's v2 tree).
            return;
        }
        let enabled =
            std::fs::read_to_string(level.join("cgroup.subtree_control")).unwrap_or_default();
        for controller in available.split_whitespace() {
            if !enabled.split_whitespace().any(|e| e == controller) {
                let _ = std::fs::write(
                    level.join("cgroup.subtree_control"),
                    format!("+{controller}"),
                );
            }
        }
        level.push(component);
    }
}

/// A container's cgroup: one directory per mounted hierarchy (v1), or one directory (v2). The
/// record is saved in the container's state so later commands act on the same directories.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {
    /// The cgroup path relative to each hierarchy's root, e.g. `/capsa/abc`.
    pub path: PathBuf,
    /// The directories that make up the cgroup, one per hierarchy.
    pub dirs: Vec<PathBuf>,
    /// The v2 directory when the host has one (pure v2 or hybrid's unified hierarchy).
    pub unified: Option<PathBuf>,
}

impl Cgroup {
    /// Resolves `cgroups_path` (from config.json; a relative path is taken from each hierarchy's
    /// root) on `layout`, without creating anything.
    pub fn resolve(layout: &Layout, cgroups_path: &Path) -> Self {
        let path = if cgroups_path.is_absolute() {
            cgroups_path.to_path_buf()
        } else {
            Path::new("/").join(cgroups_path)
        };
        let rel = path.strip_prefix("/").unwrap_or(&path);
        let dirs = layout
            .hierarchies()
            .iter()
            .map(|h| h.mount_point.join(rel))
            .collect();
        let unified = layout.unified().map(|u| u.join(rel));
        Self {
            path,
            dirs,
            unified,
        }
    }

    /// Every directory of this cgroup, v1 and v2.
    pub fn all_dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.dirs.iter().chain(self.unified.iter())
    }

    /// Creates the cgroup's directories. Fails if the cgroup already holds processes: two
    /// containers must not share one cgroup by accident.
    pub fn create(&self, layout: &Layout) -> Result<()> {
        let hierarchies = layout.hierarchies();
        for dir in self.all_dirs() {
            std::fs::create_dir_all(dir).with(|| format!("create cgroup {}", dir.display()))?;
        }
        if let (Some(mount_point), Some(dir)) = (layout.unified(), &self.unified) {
            delegate_controllers(mount_point, dir);
        }
        for (hierarchy, dir) in layout_pairs(&self.dirs, hierarchies) {
            if hierarchy.controllers.iter().any(|c| c == "cpuset") {
                inherit_cpuset(&hierarchy.mount_point, dir)?;
            }
        }
        if let Some(pid) = self.pids()?.first() {
            return Err(crate::error::invalid(format!(
                "cgroup {} is already in use (process {pid} is in it)",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// A handle on the v2 directory, for `clone3(CLONE_INTO_CGROUP)`: the child is born in the
    /// cgroup, with no window in which it runs outside it, and no migration (which would wait for
    /// an RCU grace period, see [`Cgroup::join_v1_self`]). On a hybrid host this places the child
    /// in the unified hierarchy only; its v1 directories are joined separately.
    pub fn open_v2_dir(&self) -> Option<OwnedFd> {
        let dir = self.unified.as_ref()?;
        open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()
    }

    /// Moves `pid` into the cgroup's v1 directories (`v1`) and its v2 directory (`unified`): the
    /// parts a process was not born in or did not join itself.
    pub fn add_to(&self, pid: i32, v1: bool, unified: bool) -> Result<()> {
        let v1_dirs = self.dirs.iter().filter(|_| v1);
        for dir in v1_dirs.chain(self.unified.iter().filter(|_| unified)) {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, pid.to_string())
                .with(|| format!("add process {pid} to {}", procs.display()))?;
        }
        Ok(())
    }

    /// Moves the calling process into every v1 directory of the cgroup, by writing `0` to each
    /// hierarchy's `tasks` file.
    ///
    /// Why not `cgroup.procs`, from the parent: every migration of a process by pid takes the
    /// kernel's global `cgroup_threadgroup_rwsem` for writing, and the first writer after a quiet
    /// spell waits for an RCU grace period (0.3-2 ms on an idle machine, 10-20 ms on a busy one).
    /// Migrating the *calling thread* through `tasks` is the one case the kernel exempts
    /// (`cgroup_procs_write_start`: the thread cannot exit or exec under it). For a
    /// single-threaded process, moving its thread is moving the process.
    ///
    /// The caller must be single-threaded and still privileged in the host's user namespace (a
    /// process in a new user namespace may not write the host's cgroup files).
    pub fn join_v1_self(&self) -> Result<()> {
        for dir in &self.dirs {
            let tasks = dir.join("tasks");
            std::fs::write(&tasks, "0").with(|| format!("join {}", tasks.display()))?;
        }
        Ok(())
    }

    /// Whether the cgroup has directories in v1 hierarchies (a v1 or hybrid host).
    pub fn has_v1_dirs(&self) -> bool {
        !self.dirs.is_empty()
    }

    /// The pids in the cgroup (read from the first hierarchy that has the cgroup).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let Some(dir) = self.all_dirs().find(|d| d.exists()) else {
            return Ok(Vec::new());
        };
        let procs = dir.join("cgroup.procs");
        let text = match std::fs::read_to_string(&procs) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with(|| format!("read {}", procs.display())),
        };
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Sends `signal` to every process in the cgroup.
    pub fn signal_all(&self, signal: i32) -> Result<()> {
        for pid in self.pids()? {
            // SAFETY: kill() takes a pid and a signal number; no memory is involved.
            unsafe { libc::kill(pid, signal) };
        }
        Ok(())
    }

    /// Removes the cgroup's directories, killing what is left in it first. Waits a little for
    /// killed processes to leave (the kernel needs a moment); a cgroup that stays busy is an error.
    pub fn remove(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in self.all_dirs() {
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => {
                        if Instant::now() > deadline {
                            return Err(e).with(|| format!("remove cgroup {}", dir.display()));
                        }
                        self.signal_all(libc::SIGKILL)?;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e).with(|| format!("remove cgroup {}", dir.display())),
                }
            }
        }
        Ok(())
    }
}
