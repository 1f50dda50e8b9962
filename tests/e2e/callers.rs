//! podman and containerd drive capsa-runtime exactly as they drive runc.
//!
//! Each test starts a local registry (Debian's docker-registry on 127.0.0.1), pushes a small
//! busybox-static image to it, and has the caller pull and run that image with the runtime under
//! test (`CAPSA_TEST_RUNTIME`: `capsa`, the default, or `runc` to validate the tests themselves).
//! Every caller gets its own store, state and configuration in a temporary directory, its cgroups
//! under `/capsa-test-*`, and is stopped by pid; all of it is removed after, even on failure.
//!
//! Known writes outside the temporary directories, by the tools themselves: skopeo and podman keep
//! containers/image's blob-info cache in /var/lib/containers/cache (root's fixed location, no flag
//! moves it); podman's netavark makes an empty /run/containers/networks; the runtime keeps its
//! state under its default root (/run/runc for runc) while podman's container lives, as podman
//! passes no `--root`; containerd's shims put their sockets in /run/containerd/s/ while they run.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use capsa_tests::registry::{Finished, Registry, TempDir, run_with_timeout, stop_child};

/// How long one podman or ctr command may take (a pull included).
const CALLER_TIMEOUT: Duration = Duration::from_secs(180);

/// The runtime under test, as an absolute path: `CAPSA_TEST_RUNTIME` is `capsa` (the default:
/// `CAPSA_RUNTIME_BIN`, or capsa-runtime beside this test's target directory), `runc`, or any
/// other name found on PATH, or an absolute path.
fn runtime_under_test() -> Result<PathBuf> {
    let choice = std::env::var("CAPSA_TEST_RUNTIME").unwrap_or_else(|_| "capsa".into());
    let path = match choice.as_str() {
        "capsa" => match std::env::var_os("CAPSA_RUNTIME_BIN") {
            Some(bin) => PathBuf::from(bin),
            None => {
                // target/<profile>/deps/e2e-<hash> -> target/<profile>/capsa-runtime
                let exe = std::env::current_exe().context("current_exe")?;
                exe.parent()
                    .and_then(Path::parent)
                    .context("test executable has no grandparent directory")?
                    .join("capsa-runtime")
            }
        },
        name if name.starts_with('/') => PathBuf::from(name),
        name => which(name).with_context(|| format!("{name} (CAPSA_TEST_RUNTIME) not on PATH"))?,
    };
    ensure!(
        path.is_file(),
        "runtime under test {} not found (build it: cargo build --workspace --bins)",
        path.display()
    );
    let path = fs::canonicalize(&path).with_context(|| format!("{}", path.display()))?;
    Ok(path)
}

/// The first executable `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Fails unless the exit code is `code`.
fn expect_code(finished: &Finished, code: i32, what: &str) -> Result<()> {
    ensure!(
        finished.status.code() == Some(code),
        "{what}: expected exit code {code}, got {}\nstdout: {}\nstderr: {}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    Ok(())
}

/// Removes the cgroup `rel` (relative to the hierarchy roots) and everything below it from every
/// mounted cgroup hierarchy, deepest first. Only the test's own `capsa-test-*` cgroups get here.
fn remove_cgroup_tree(rel: &str) {
    assert!(rel.starts_with("capsa-test-"), "not a test cgroup: {rel}");
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = hierarchies.flatten().map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    let tops: Vec<PathBuf> = roots
        .iter()
        .map(|root| root.join(rel))
        .filter(|top| top.is_dir())
        .collect();
    // Processes still in the test's cgroups (a container whose caller died mid-test) are the
    // test's own: kill them, or the cgroups cannot go.
    let mut members = Vec::new();
    for top in &tops {
        collect_cgroup_members(top, &mut members);
    }
    members.sort_unstable();
    members.dedup();
    if !members.is_empty() {
        kill_leftovers(&members);
        std::thread::sleep(Duration::from_millis(200));
    }
    for top in &tops {
        remove_dirs_deepest_first(top);
    }
}

fn collect_cgroup_members(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_cgroup_members(&entry.path(), pids);
            }
        }
    }
}

fn remove_dirs_deepest_first(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dirs_deepest_first(&entry.path());
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        eprintln!("warning: cannot remove cgroup {}: {e}", dir.display());
    }
}

/// The pids of processes (other than this one) whose command line mentions `needle`: the
/// conmons and shims that a caller started for this test, found by the test's unique paths.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let mut cmdline = Vec::new();
            fs::File::open(format!("/proc/{pid}/cmdline"))
                .and_then(|mut f| f.read_to_end(&mut cmdline))
                .is_ok()
                && String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// SIGKILLs the given pids (leftovers of this test, found by [`processes_mentioning`]).
fn kill_leftovers(pids: &[i32]) {
    for &pid in pids {
        eprintln!("warning: killing leftover process {pid}");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

// ---- podman --------------------------------------------------------------------------------------

/// podman with its own store, run root, temporary dir, configuration files, events log and
/// cgroup parent, all private to one test.
struct Podman {
    dir: TempDir,
    runtime: PathBuf,
    cgroup_parent: String,
}

impl Podman {
    fn new(registry: &Registry) -> Result<Podman> {
        let dir = TempDir::new("podman")?;
        let p = |rel: &str| dir.join(rel).to_string_lossy().into_owned();
        for sub in ["root", "runroot", "tmp", "networks"] {
            fs::create_dir(dir.join(sub))?;
        }
        fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = \"{}\"\n\
                 tmp_dir = \"{}\"\n\
                 [network]\n\
                 network_config_dir = \"{}\"\n",
                p("events.log"),
                p("tmp"),
                p("networks"),
            ),
        )?;
        fs::write(
            dir.join("registries.conf"),
            format!(
                "unqualified-search-registries = []\n\
                 [[registry]]\nlocation = \"{}\"\ninsecure = true\n",
                registry.host()
            ),
        )?;
        fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                p("runroot"),
                p("root")
            ),
        )?;
        Ok(Podman {
            runtime: runtime_under_test()?,
            cgroup_parent: format!("capsa-test-podman-{}", dir_suffix(&dir)),
            dir,
        })
    }

    /// `podman run --rm` of `image` with `args`, as the podman of a user who chose the runtime
    /// under test with `--runtime`.
    fn run(&self, image: &str, args: &[&str]) -> Result<Finished> {
        let p = |rel: &str| self.dir.join(rel);
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", p("containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", p("registries.conf"))
            .env("CONTAINERS_STORAGE_CONF", p("storage.conf"))
            .arg("--runtime")
            .arg(&self.runtime)
            .arg("--root")
            .arg(p("root"))
            .arg("--runroot")
            .arg(p("runroot"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "run",
                "--rm",
                // Explicit limits: with none, podman asks for an RLIMIT_NPROC above this machine's
                // hard limit, which root without CAP_SYS_RESOURCE cannot raise.
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=4096:4096",
                "--tls-verify=false",
                "--network",
                "none",
                "--pull",
                "missing",
            ])
            .arg("--cgroup-parent")
            .arg(format!("/{}", self.cgroup_parent))
            .arg(image)
            .args(args);
        run_with_timeout(&mut cmd, self.dir.path(), CALLER_TIMEOUT)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // A conmon still running (the test failed mid-way) names our directories on its command
        // line; it is ours to stop.
        kill_leftovers(&processes_mentioning(&self.dir.path().to_string_lossy()));
        remove_cgroup_tree(&self.cgroup_parent);
        // The TempDir unmounts what is left below it and removes it when dropped after this.
    }
}

/// The unique tail (`<pid>-<n>`) of a test directory's name, for names derived from it.
fn dir_suffix(dir: &TempDir) -> String {
    let name = dir.path().file_name().unwrap_or_default().to_string_lossy();
    name.rsplitn(3, '-')
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("-")
}

#[test]
fn podman_runs_an_image_and_shows_its_output() -> Result<()> {
    let registry = Registry::start()?;
    let image = registry.push_busybox("capsa/busybox", "podman")?;
    let podman = Podman::new(&registry)?;
    let out = podman
        .run(&image, &["echo", "hi"])?
        .ok("podman run echo hi")?;
    ensure!(
        out.stdout == "hi\n",
        "podman run printed {:?}, not \"hi\\n\"\nstderr: {}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

#[test]
fn podman_propagates_the_container_exit_code() -> Result<()> {
    let registry = Registry::start()?;
    let image = registry.push_busybox("capsa/busybox", "podman")?;
    let podman = Podman::new(&registry)?;
    let out = podman.run(&image, &["sh", "-c", "exit 3"])?;
    expect_code(&out, 3, "podman run sh -c 'exit 3'")
}

// ---- containerd ----------------------------------------------------------------------------------

/// A containerd of this test's own: root, state, sockets and config in a temporary directory,
/// no CRI; run under catatonit, which (not being pid 1) becomes a child subreaper and so reaps the
/// shims containerd leaves to their parent's parent. Stopped by pid on drop.
struct Containerd {
    dir: TempDir,
    supervisor: Child,
    namespace: String,
    runtime: PathBuf,
    cgroup_parent: String,
}

impl Containerd {
    fn start() -> Result<Containerd> {
        let dir = TempDir::new("containerd")?;
        let p = |rel: &str| dir.join(rel).to_string_lossy().into_owned();
        for sub in ["runc", "fifo"] {
            fs::create_dir(dir.join(sub))?;
        }
        let config = format!(
            "version = 2\n\
             root = \"{root}\"\n\
             state = \"{state}\"\n\
             disabled_plugins = [\n\
               \"io.containerd.grpc.v1.cri\",\n\
               \"io.containerd.internal.v1.opt\",\n\
               \"io.containerd.internal.v1.tracing\",\n\
               \"io.containerd.tracing.processor.v1.otlp\",\n\
               \"io.containerd.snapshotter.v1.aufs\",\n\
               \"io.containerd.snapshotter.v1.btrfs\",\n\
               \"io.containerd.snapshotter.v1.devmapper\",\n\
               \"io.containerd.snapshotter.v1.zfs\",\n\
             ]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"\"\n\
             [metrics]\n  address = \"\"\n",
            root = p("root"),
            state = p("state"),
            sock = p("containerd.sock"),
        );
        fs::write(dir.join("config.toml"), config)?;
        let log = fs::File::create(dir.join("containerd.log"))?;
        let supervisor = Command::new("catatonit")
            .arg("--")
            .arg("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning catatonit -- containerd (install catatonit and containerd)")?;
        let suffix = dir_suffix(&dir);
        let mut containerd = Containerd {
            supervisor,
            namespace: format!("capsa-test-{suffix}"),
            runtime: runtime_under_test()?,
            cgroup_parent: format!("capsa-test-ctr-{suffix}"),
            dir,
        };
        containerd.wait_ready()?;
        Ok(containerd)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.supervisor.try_wait()? {
                bail!(
                    "containerd exited ({status}) at start: {}",
                    fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
                );
            }
            if self.socket().exists()
                && self
                    .ctr(&["version"], Duration::from_secs(10))?
                    .status
                    .success()
            {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "containerd did not answer in time: {}",
                    fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ctr --address SOCK --namespace NS ARGS`.
    fn ctr(&self, args: &[&str], timeout: Duration) -> Result<Finished> {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args);
        run_with_timeout(&mut cmd, self.dir.path(), timeout)
    }

    fn pull(&self, image: &str) -> Result<()> {
        self.ctr(&["images", "pull", "--plain-http", image], CALLER_TIMEOUT)?
            .ok("ctr images pull")
            .map(drop)
    }

    /// `ctr run --rm` of `image` as container `id`, through the runc shim (io.containerd.runc.v2)
    /// told to use the runtime under test as its runc binary.
    fn run(&self, image: &str, id: &str, args: &[&str]) -> Result<Finished> {
        let runtime = self.runtime.to_string_lossy();
        let runc_root = self.dir.join("runc");
        let fifo_dir = self.dir.join("fifo");
        let cgroup = format!("/{}/{id}", self.cgroup_parent);
        let mut all = vec![
            "run",
            "--rm",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            &runtime,
            "--runc-root",
            runc_root.to_str().context("non-UTF-8 temp dir")?,
            "--fifo-dir",
            fifo_dir.to_str().context("non-UTF-8 temp dir")?,
            "--cgroup",
            &cgroup,
            image,
            id,
        ];
        all.extend_from_slice(args);
        self.ctr(&all, CALLER_TIMEOUT)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // containerd first (SIGTERM via catatonit, which forwards it), then whatever it left:
        // shims and their containers name our socket or directories on their command lines.
        stop_child(&mut self.supervisor, Duration::from_secs(10));
        kill_leftovers(&processes_mentioning(&self.dir.path().to_string_lossy()));
        remove_cgroup_tree(&self.cgroup_parent);
        // The TempDir unmounts rootfs mounts left below it and removes it when dropped after this.
    }
}

#[test]
fn containerd_runs_an_image_and_shows_its_output() -> Result<()> {
    let registry = Registry::start()?;
    let image = registry.push_busybox("capsa/busybox", "containerd")?;
    let containerd = Containerd::start()?;
    containerd.pull(&image)?;
    let out = containerd
        .run(&image, "echo-hi", &["echo", "hi"])?
        .ok("ctr run echo hi")?;
    ensure!(
        out.stdout == "hi\n",
        "ctr run printed {:?}, not \"hi\\n\"\nstderr: {}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

#[test]
fn containerd_propagates_the_container_exit_code() -> Result<()> {
    let registry = Registry::start()?;
    let image = registry.push_busybox("capsa/busybox", "containerd")?;
    let containerd = Containerd::start()?;
    containerd.pull(&image)?;
    let out = containerd.run(&image, "exit-3", &["sh", "-c", "exit 3"])?;
    expect_code(&out, 3, "ctr run sh -c 'exit 3'")
}
