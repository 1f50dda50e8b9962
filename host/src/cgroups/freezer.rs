//! Freezing a container's cgroup (pause/resume) and killing everything in it. v1 writes
//! freezer.state and waits until the kernel reports FROZEN; v2 writes cgroup.freeze and waits for
//! `frozen 1` in cgroup.events. Killing uses v2's cgroup.kill when the kernel has it, else
//! freeze + SIGKILL + thaw, so a process cannot fork its way out between listing and killing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Cgroup, Layout};
use crate::error::{Context, Result, invalid};

/// How long a freeze may take before it is reported as failed.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

impl Cgroup {
    fn freezer(&self, layout: &Layout) -> Option<Freezer> {
        if layout.is_pure_v2() {
            self.unified.clone().map(Freezer::V2)
        } else {
            self.controller_dir(layout, "freezer").map(Freezer::V1)
        }
    }

    /// Freezes every process of the cgroup and waits until the kernel says they are.
    pub fn freeze(&self, layout: &Layout) -> Result<()> {
        let freezer = self
            .freezer(layout)
            .ok_or_else(|| invalid("this host has no cgroup freezer"))?;
        freezer.set(true)?;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        while !freezer.is_frozen() {
            if Instant::now() > deadline {
                let _ = freezer.set(false);
                return Err(invalid(format!(
                    "cgroup {} did not freeze within {FREEZE_TIMEOUT:?}",
                    self.path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
            // v1 may need the write repeated while processes are still entering the cgroup.
            freezer.set(true)?;
        }
        Ok(())
    }

    /// Thaws the cgroup.
    pub fn thaw(&self, layout: &Layout) -> Result<()> {
        match self.freezer(layout) {
            Some(freezer) => freezer.set(false),
            None => Ok(()),
        }
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self, layout: &Layout) -> bool {
        self.freezer(layout).is_some_and(|f| f.is_frozen())
    }

    /// Kills every process in the cgroup with SIGKILL. The host's layout is read only when
    /// something is left to kill: at delete the container has usually exited and its cgroup is
    /// empty, and that check needs no mountinfo.
    pub fn kill_all(&self) -> Result<()> {
        if self.pids()?.is_empty() {
            return Ok(());
        }
        let layout = &Layout::detect()?;
        if let Some(dir) = &self.unified {
            let kill = dir.join("cgroup.kill");
            if layout.is_pure_v2() && kill.exists() {
                return std::fs::write(&kill, "1").with(|| format!("write {}", kill.display()));
            }
        }
        let frozen = self.freeze(layout).is_ok();
        self.signal_all(libc::SIGKILL)?;
        if frozen {
            self.thaw(layout)?;
        }
        Ok(())
    }
}

enum Freezer {
    V1(PathBuf),
    V2(PathBuf),
}

impl Freezer {
    fn set(&self, frozen: bool) -> Result<()> {
        let (path, value) = match self {
            Self::V1(dir) => (
                dir.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Self::V2(dir) => (dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
        };
        std::fs::write(&path, value).with(|| format!("write {value} to {}", path.display()))
    }

    fn is_frozen(&self) -> bool {
        match self {
            Self::V1(dir) => std::fs::read_to_string(dir.join("freezer.state"))
                .is_ok_and(|s| s.trim() == "FROZEN"),
            Self::V2(dir) => std::fs::read_to_string(dir.join("cgroup.events"))
                .is_ok_and(|s| s.lines().any(|l| l.trim() == "frozen 1")),
        }
    }
}
