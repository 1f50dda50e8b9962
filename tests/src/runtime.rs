//! The OCI runtime under test, chosen by `CAPSA_TEST_RUNTIME`: `capsa` (default, the
//! capsa-runtime binary of this workspace) or `runc` (from PATH, to validate the suite; crun 1.8
//! refuses this host's hybrid cgroup layout, so it is not offered).
//! Every call passes the test's own `--root`; every call has a timeout.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long one runtime command may take before the harness kills it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which runtime implementation a [`Runtime`] drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Capsa,
    Runc,
}

impl RuntimeKind {
    /// The runtime selected by `CAPSA_TEST_RUNTIME` (default `capsa`).
    pub fn from_env() -> Result<Self> {
        match std::env::var("CAPSA_TEST_RUNTIME").as_deref() {
            Err(_) | Ok("") | Ok("capsa") => Ok(Self::Capsa),
            Ok("runc") => Ok(Self::Runc),
            Ok(other) => bail!("CAPSA_TEST_RUNTIME={other:?}: expected capsa or runc"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Capsa => "capsa",
            Self::Runc => "runc",
        }
    }
}

/// Finds `name` in PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The capsa-runtime binary: `CAPSA_RUNTIME_BIN`, else next to the test executable's profile dir
/// (target/<profile>/deps/e2e-xxx → target/<profile>/capsa-runtime).
pub fn capsa_runtime_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CAPSA_RUNTIME_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("CAPSA_RUNTIME_BIN={} does not exist", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable has no target/<profile> directory")?;
    let bin = profile_dir.join("capsa-runtime");
    if !bin.is_file() {
        bail!(
            "capsa-runtime not found at {}: build it first: cargo build --bins \
             (or set CAPSA_RUNTIME_BIN, or CAPSA_TEST_RUNTIME=runc to run the suite against runc)",
            bin.display()
        );
    }
    Ok(bin)
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// One runtime binary with one state root.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub kind: RuntimeKind,
    pub bin: PathBuf,
    /// The `--root` of every call.
    pub root: PathBuf,
    /// Where the stdout/stderr files of each call go.
    io_dir: PathBuf,
}

impl Runtime {
    /// A runtime of `kind` keeping its state in `root` and the output of its calls in `io_dir`.
    pub fn new(kind: RuntimeKind, root: &Path, io_dir: &Path) -> Result<Self> {
        let bin = match kind {
            RuntimeKind::Capsa => capsa_runtime_bin()?,
            RuntimeKind::Runc => which("runc").context("runc not found in PATH")?,
        };
        std::fs::create_dir_all(io_dir).with_context(|| format!("mkdir {}", io_dir.display()))?;
        Ok(Self {
            kind,
            bin,
            root: root.to_owned(),
            io_dir: io_dir.to_owned(),
        })
    }

    pub fn is_runc(&self) -> bool {
        self.kind == RuntimeKind::Runc
    }

    /// `<bin> --root <root> <args>`, stdin from /dev/null, stdout/stderr to fresh files (files,
    /// not pipes: a detached container inherits them and would hold a pipe open forever).
    fn command(&self, args: &[&str]) -> Result<(Command, PathBuf, PathBuf)> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        let verb = args
            .iter()
            .find(|a| !a.starts_with('-'))
            .copied()
            .unwrap_or("call");
        let out_path = self.io_dir.join(format!("{n:04}-{verb}.stdout"));
        let err_path = self.io_dir.join(format!("{n:04}-{verb}.stderr"));
        let out = File::create(&out_path).with_context(|| format!("{}", out_path.display()))?;
        let err = File::create(&err_path).with_context(|| format!("{}", err_path.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        Ok((cmd, out_path, err_path))
    }

    /// Starts `args` without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> Result<Spawned> {
        let (mut cmd, stdout_path, stderr_path) = self.command(args)?;
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} {}", self.bin.display(), args.join(" ")))?;
        Ok(Spawned {
            child: Some(child),
            command: format!("{} {}", self.kind.name(), args.join(" ")),
            stdout_path,
            stderr_path,
        })
    }

    /// Runs `args` to completion within `timeout` (killed and reported as an error otherwise).
    pub fn exec_timeout(&self, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
        self.spawn(args)?.wait(timeout)
    }

    /// Runs `args` to completion within [`DEFAULT_TIMEOUT`].
    pub fn exec(&self, args: &[&str]) -> Result<CmdOutput> {
        self.exec_timeout(args, DEFAULT_TIMEOUT)
    }

    /// Like [`Runtime::exec`] but the output is not kept (cleanup calls).
    pub fn exec_quiet(&self, args: &[&str]) -> Result<CmdOutput> {
        let out = self.exec_timeout(args, Duration::from_secs(15))?;
        let _ = std::fs::remove_file(&out.stdout_path);
        let _ = std::fs::remove_file(&out.stderr_path);
        Ok(out)
    }
}

/// A runtime command that was started and not yet waited for. Dropping it kills and reaps it.
#[derive(Debug)]
pub struct Spawned {
    child: Option<Child>,
    command: String,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Spawned {
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("Spawned used after wait")
    }

    /// Sends `sig` to the runtime process itself.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid()), sig)
            .with_context(|| format!("kill -{sig} {} ({})", self.pid(), self.command))
    }

    /// Output written so far to the command's stdout.
    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Waits for the command to exit; kills it and fails if it takes longer than `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Result<CmdOutput> {
        let mut child = self.child.take().expect("Spawned waited twice");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().context("waitpid")? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "`{}` did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                    self.command,
                    std::fs::read_to_string(&self.stdout_path).unwrap_or_default(),
                    std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(CmdOutput {
            command: self.command.clone(),
            status,
            stdout: std::fs::read_to_string(&self.stdout_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr_path).unwrap_or_default(),
            stdout_path: self.stdout_path.clone(),
            stderr_path: self.stderr_path.clone(),
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a finished runtime command left: exit status and its stdout/stderr.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The file that received stdout; for `create`/`run -d` the payload keeps writing to it.
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl CmdOutput {
    /// The exit code, or 128+n if the runtime itself died of signal n.
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.status
            .code()
            .or_else(|| self.status.signal().map(|s| 128 + s))
            .unwrap_or(-1)
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Fails (with the command's output) unless it exited 0.
    pub fn ok(self) -> Result<Self> {
        if !self.success() {
            bail!("{self}");
        }
        Ok(self)
    }

    /// Fails unless the command exited non-zero.
    pub fn failed(self) -> Result<Self> {
        if self.success() {
            bail!("expected failure, got success: {self}");
        }
        Ok(self)
    }

    /// The payload output written to stdout since the command started (for `create`/`run -d`).
    pub fn stdout_now(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("stdout is not JSON: {self}"))
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}
