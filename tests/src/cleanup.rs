//! Hygiene: everything a test creates on the host (temp dirs, containers, processes, cgroups,
//! network namespaces, mounts) is recorded in a [`Guard`] and removed when the guard drops, even
//! when the test panics. The guard only ever touches what it recorded.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::mountinfo;
use crate::runtime::Runtime;

/// Prefix of every name the suite puts on the host: temp dirs, container ids, cgroups, netns.
pub const PREFIX: &str = "capsa-test-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique in this host: `capsa-test-<label>-<pid>-<n>`.
pub fn unique_name(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{PREFIX}{label}-{}-{n}", std::process::id())
}

/// A directory under /tmp removed on drop, unless something is still mounted below it (then it is
/// left in place with a warning: deleting through a leaked mount could destroy host files).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `/tmp/capsa-test-<label>-<pid>-<n>`, mode 0755 so that the payload's users
    /// (including mapped ones in a user namespace) can traverse it.
    pub fn new(label: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(unique_name(label));
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let below = mounts_below(&self.path);
        if !below.is_empty() {
            eprintln!(
                "capsa-tests: leaving {} in place, still mounted below it: {below:?}",
                self.path.display()
            );
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("capsa-tests: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Mount points of the host mount namespace at or below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    match mountinfo::own() {
        Ok(mounts) => mounts
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
            .collect(),
        Err(e) => vec![format!("<cannot read mountinfo: {e}>")],
    }
}

/// The directories, one per hierarchy, in which a cgroup path lives on this host: every cgroup v1
/// hierarchy and the v2 hierarchy (the hybrid `unified` mount or the v2 root), as found in
/// /proc/self/mountinfo.
pub fn cgroup_dirs(cgroup_path: &str) -> Result<Vec<PathBuf>> {
    let rel = cgroup_path.trim_start_matches('/');
    let mut dirs = Vec::new();
    for m in mountinfo::own()? {
        if m.fs_type != "cgroup" && m.fs_type != "cgroup2" {
            continue;
        }
        // A hierarchy mounted from a sub-cgroup (root other than "/") only shows the cgroups
        // below that root.
        let root = m.root.trim_start_matches('/');
        let inside = if root.is_empty() {
            Some(rel)
        } else {
            rel.strip_prefix(root).map(|r| r.trim_start_matches('/'))
        };
        if let Some(inside) = inside {
            let dir = Path::new(&m.mount_point).join(inside);
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    Ok(dirs)
}

/// Pids listed in a cgroup directory and its descendants.
fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                pids.extend(cgroup_pids(&e.path()));
            }
        }
    }
    pids
}

/// Removes a cgroup directory tree, deepest first (cgroupfs only allows rmdir of empty cgroups).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether any process is still attached to the cgroup path in some hierarchy.
pub fn cgroup_exists(cgroup_path: &str) -> Result<Vec<PathBuf>> {
    Ok(cgroup_dirs(cgroup_path)?
        .into_iter()
        .filter(|d| d.exists())
        .collect())
}

/// Removes every trace of a test cgroup: kills what still runs in it (these are the test's own
/// container processes: the path is unique to the test) and removes the directories.
pub fn remove_cgroup(cgroup_path: &str) -> Result<()> {
    if !cgroup_path
        .trim_start_matches('/')
        .split('/')
        .next_back()
        .is_some_and(|leaf| leaf.starts_with(PREFIX))
    {
        bail!("refusing to remove cgroup {cgroup_path}: not a {PREFIX}* cgroup");
    }
    let dirs = cgroup_exists(cgroup_path)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for dir in dirs {
        loop {
            for pid in cgroup_pids(&dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            match remove_cgroup_tree(&dir) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    bail!("rmdir {}: {e}", dir.display());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    Ok(())
}

/// Everything a test put on the host, removed on drop in reverse dependency order: containers
/// (via `delete --force`), then processes, cgroups, network namespaces, mounts and temp dirs.
#[derive(Debug)]
pub struct Guard {
    runtime: Runtime,
    containers: Mutex<Vec<String>>,
    pids: Mutex<Vec<i32>>,
    cgroups: Mutex<Vec<String>>,
    netns: Mutex<Vec<String>>,
    mounts: Mutex<Vec<PathBuf>>,
}

impl Guard {
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime,
            containers: Mutex::default(),
            pids: Mutex::default(),
            cgroups: Mutex::default(),
            netns: Mutex::default(),
            mounts: Mutex::default(),
        }
    }

    /// A container id the test will create; deleted with `delete --force` at the end.
    pub fn container(&self, id: &str) {
        push(&self.containers, id.to_owned());
    }

    /// A process the test started directly (not through a runtime); SIGKILLed at the end.
    pub fn pid(&self, pid: i32) {
        push(&self.pids, pid);
    }

    /// A cgroup path (as in `linux.cgroupsPath`) the test's containers use.
    pub fn cgroup(&self, path: &str) {
        push(&self.cgroups, path.to_owned());
    }

    /// A named network namespace the test made with `ip netns add`.
    pub fn netns(&self, name: &str) {
        push(&self.netns, name.to_owned());
    }

    /// A mount the test made itself on the host.
    pub fn mount(&self, path: &Path) {
        push(&self.mounts, path.to_owned());
    }
}

fn push<T>(list: &Mutex<Vec<T>>, item: T) {
    list.lock().unwrap_or_else(|p| p.into_inner()).push(item);
}

fn take<T>(list: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *list.lock().unwrap_or_else(|p| p.into_inner()))
}

impl Drop for Guard {
    fn drop(&mut self) {
        for id in take(&self.containers).iter().rev() {
            // Errors are expected: most containers are already gone.
            let _ = self.runtime.exec_quiet(&["delete", "--force", id]);
        }
        for pid in take(&self.pids) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for path in take(&self.cgroups) {
            if let Err(e) = remove_cgroup(&path) {
                eprintln!("capsa-tests: cleanup of cgroup {path}: {e:#}");
            }
        }
        for name in take(&self.netns) {
            let status = Command::new("ip").args(["netns", "del", &name]).status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!("capsa-tests: cleanup: ip netns del {name} failed: {status:?}");
            }
        }
        for path in take(&self.mounts).iter().rev() {
            if let Err(e) = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("capsa-tests: cleanup: umount {}: {e}", path.display());
            }
        }
    }
}

/// Removes what an engine test left besides its containers: processes of its temp dir (root
/// or cwd inside it, or `root` on their command line: monitors), its cgroup parent, and every
/// mount below its dir. Shared by the engine and daemon harnesses' drops.
pub fn engine_leftovers(dir: &Path, root: &Path, cgroup_parent: &str) {
    let root = root.to_string_lossy().into_owned();
    for pid in crate::context::processes_of(dir, &root) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Err(e) = remove_cgroup(cgroup_parent) {
        eprintln!("capsa-tests: cgroup {cgroup_parent}: {e:#}");
    }
    unmount_below(dir);
}

/// Detaches every mount below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let mut mounts = mounts_below(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}
