//! The per-test world: a temp dir, a runtime with its own `--root`, bundles, container ids, and
//! the [`Guard`] that removes all of it when the test ends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bundle::Bundle;
use crate::cleanup::{self, Guard, TempDir, unique_name};
use crate::probe::{Facts, Probe};
use crate::runtime::{CmdOutput, Runtime, RuntimeKind};

/// Prints why a test did not check anything and lets it pass. Tests call it when the runtime
/// under test is runc and runc knowingly deviates from the OCI spec, or a peer is missing.
pub fn skip(test: &str, reason: &str) -> Result<()> {
    eprintln!("SKIPPED {test}: {reason}");
    Ok(())
}

/// Everything one test uses. Fields drop in order: the guard (containers, cgroups, ...) goes
/// before the temp dir that holds bundles and the runtime root.
#[derive(Debug)]
pub struct TestContext {
    pub label: String,
    pub runtime: Runtime,
    guard: Guard,
    dir: TempDir,
    bundles: AtomicUsize,
}

impl TestContext {
    /// A context for the runtime chosen by `CAPSA_TEST_RUNTIME`.
    pub fn new(label: &str) -> Result<Self> {
        Self::with_runtime(label, RuntimeKind::from_env()?)
    }

    /// A context for a given runtime (the differential tests use two).
    pub fn with_runtime(label: &str, kind: RuntimeKind) -> Result<Self> {
        let dir = TempDir::new(label)?;
        let runtime = Runtime::new(kind, &dir.path().join("root"), &dir.path().join("io"))?;
        Ok(Self {
            label: label.to_owned(),
            guard: Guard::new(runtime.clone()),
            runtime,
            dir,
            bundles: AtomicUsize::new(0),
        })
    }

    /// The test's temp dir (`/tmp/capsa-test-...`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// A new directory in the test's temp dir.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir().join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(path)
    }

    /// A new bundle with a fresh rootfs and a unique cgroups path (removed at the end).
    pub fn bundle(&self) -> Result<Bundle> {
        let n = self.bundles.fetch_add(1, Ordering::SeqCst);
        let cgroup = format!("/{}", unique_name(&self.label));
        self.guard.cgroup(&cgroup);
        Bundle::new(&self.dir().join(format!("bundle-{n}")), &cgroup)
    }

    /// A new unique container id, deleted with `delete --force` at the end.
    pub fn new_id(&self) -> String {
        let id = unique_name(&self.label);
        self.guard.container(&id);
        id
    }

    /// Any runtime command with the test's `--root`.
    pub fn rt(&self, args: &[&str]) -> Result<CmdOutput> {
        self.runtime.exec(args)
    }

    /// Writes the bundle's spec and runs it in the foreground (`run --bundle B ID`).
    pub fn run(&self, bundle: &Bundle) -> Result<CmdOutput> {
        bundle.write()?;
        self.run_written(bundle)
    }

    /// Runs the bundle's config.json as it is on disk.
    pub fn run_written(&self, bundle: &Bundle) -> Result<CmdOutput> {
        let id = self.new_id();
        self.runtime
            .exec(&["run", "--bundle", path_str(&bundle.dir)?, &id])
    }

    /// Runs `probe` as the bundle's payload; the run must succeed. Returns the printed facts.
    pub fn probe(&self, bundle: &mut Bundle, probe: &Probe) -> Result<Facts> {
        bundle.payload(&probe.script());
        let out = self.run(bundle)?.ok()?;
        Facts::parse(&out.stdout).with_context(|| format!("parsing the probe output of {out}"))
    }

    /// Writes the bundle and `create`s a container from it, with `extra` options. The create
    /// must succeed; returns the id and the create's output (its stdout file later receives the
    /// payload's output).
    pub fn create(&self, bundle: &Bundle, extra: &[&str]) -> Result<(String, CmdOutput)> {
        bundle.write()?;
        let id = self.new_id();
        let mut args = vec!["create", "--bundle", path_str(&bundle.dir)?];
        args.extend_from_slice(extra);
        args.push(&id);
        let out = self.runtime.exec(&args)?.ok()?;
        Ok((id, out))
    }

    /// `run -d`: returns once the container runs in the background.
    pub fn run_detached(&self, bundle: &Bundle) -> Result<(String, CmdOutput)> {
        bundle.write()?;
        let id = self.new_id();
        let out = self
            .runtime
            .exec(&["run", "-d", "--bundle", path_str(&bundle.dir)?, &id])?
            .ok()?;
        Ok((id, out))
    }

    /// `state ID` parsed; fails if the command fails.
    pub fn state(&self, id: &str) -> Result<serde_json::Value> {
        self.rt(&["state", id])?.ok()?.json()
    }

    /// Polls `state ID` until its status is `status`.
    pub fn wait_status(
        &self,
        id: &str,
        status: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state(id)?;
            if state["status"] == status {
                return Ok(state);
            }
            if Instant::now() > deadline {
                bail!("container {id} still not {status} after {timeout:?}: {state}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid `state` reports for a container.
    pub fn pid_of(&self, id: &str) -> Result<i32> {
        let state = self.state(id)?;
        let pid = state["pid"]
            .as_i64()
            .with_context(|| format!("state has no pid: {state}"))?;
        i32::try_from(pid).with_context(|| format!("pid {pid}"))
    }

    /// Asserts a failed `create`/`run` of container `id` from `bundle` left nothing on the host:
    /// no state under `--root`, no cgroup, no process, no mount.
    pub fn assert_nothing_left(&self, id: &str, bundle: &Bundle) -> Result<()> {
        let mut problems = Vec::new();
        // Processes may need a moment to be reaped after the runtime exits.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            problems.clear();
            if let Ok(rd) = std::fs::read_dir(&self.runtime.root) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().contains(id) {
                        problems.push(format!("state left: {}", e.path().display()));
                    }
                }
            }
            for cgroup in [bundle.cgroup.clone(), format!("/{id}")] {
                for dir in cleanup::cgroup_exists(&cgroup)? {
                    problems.push(format!("cgroup left: {}", dir.display()));
                }
            }
            for pid in processes_of(self.dir(), id) {
                problems.push(format!("process left: {pid}"));
            }
            for m in cleanup::mounts_below(self.dir()) {
                problems.push(format!("mount left: {m}"));
            }
            for m in crate::mountinfo::own()? {
                if m.mount_point.contains(id) || m.source.contains(id) {
                    problems.push(format!("mount left: {}", m.mount_point));
                }
            }
            if problems.is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !problems.is_empty() {
            bail!(
                "container {id} left things behind:\n{}",
                problems.join("\n")
            );
        }
        let state = self.rt(&["state", id])?;
        if state.success() {
            bail!("state of container {id} still succeeds: {state}");
        }
        Ok(())
    }
}

/// Host processes that belong to the test: root or cwd inside `dir`, or `id` on the command line.
pub fn processes_of(dir: &Path, id: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let inside =
                |link: &str| std::fs::read_link(proc.join(link)).is_ok_and(|p| p.starts_with(dir));
            let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            inside("root") || inside("cwd") || cmdline.contains(id)
        })
        .collect()
}

/// A path as UTF-8 for a command line.
pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}
