//! The daemon harness: a `capsad` per test with its own data root, exec root, socket and
//! cgroup parent, driven by the real docker CLI (`DOCKER_HOST=unix://…`, a `DOCKER_CONFIG` of
//! the test's), docker-py, docker-compose, curl, and the `capsa` CLI on the same store. Every
//! command has a timeout; the daemon, its containers, their monitors, mounts and cgroups are
//! removed on drop, even when the test fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cleanup::{self, TempDir, unique_name};
use crate::runtime::CmdOutput;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// How long one client command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A binary beside capsa-runtime (`capsad`, `capsa`).
pub fn sibling_bin(name: &str) -> Result<PathBuf> {
    let runtime = crate::runtime::capsa_runtime_bin()?;
    let bin = runtime.with_file_name(name);
    if !bin.is_file() {
        bail!(
            "{} not found: cargo build --workspace --bins first",
            bin.display()
        );
    }
    Ok(bin)
}

/// The docker CLI on the machine (28.x), found on PATH.
pub fn docker_bin() -> Result<PathBuf> {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("docker");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("the docker CLI is not on PATH")
}

/// Runs `cmd` with stdout/stderr in files under `io` (a detached payload must not hold a pipe
/// of the test), killing it (by pid) after `timeout`.
pub fn run_captured(
    mut cmd: Command,
    label: &str,
    io: &Path,
    timeout: Duration,
) -> Result<CmdOutput> {
    let n = CALLS.fetch_add(1, Ordering::SeqCst);
    std::fs::create_dir_all(io)?;
    let out_path = io.join(format!("{n:04}.stdout"));
    let err_path = io.join(format!("{n:04}.stderr"));
    let mut child = cmd
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("run {label}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{label} did not finish in {timeout:?}; stdout: {}; stderr: {}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(CmdOutput {
        command: label.to_owned(),
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        stdout_path: out_path,
        stderr_path: err_path,
    })
}

/// One test's daemon.
pub struct Daemon {
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    /// The parent cgroup of every container (`--cgroup-parent`), removed at the end.
    pub cgroup_parent: String,
    pub capsad: PathBuf,
    pub capsa: PathBuf,
    pub docker: PathBuf,
    /// Extra capsad flags (TLS listeners...).
    extra: Vec<String>,
    /// Extra environment for capsad.
    env: Vec<(String, String)>,
    child: Option<Child>,
    dir: TempDir,
}

impl Daemon {
    /// Starts capsad on a unix socket of the test's.
    pub fn start(label: &str) -> Result<Daemon> {
        Daemon::start_with(label, &[])
    }

    /// Starts capsad with extra flags.
    pub fn start_with(label: &str, extra: &[&str]) -> Result<Daemon> {
        Daemon::start_with_env(label, extra, &[])
    }

    /// Starts capsad with extra flags and environment.
    pub fn start_with_env(label: &str, extra: &[&str], env: &[(&str, &str)]) -> Result<Daemon> {
        let dir = TempDir::new(label)?;
        let mut d = Daemon {
            root: dir.path().join("root"),
            state: dir.path().join("state"),
            socket: dir.path().join("capsad.sock"),
            cgroup_parent: format!("/{}", unique_name(label)),
            capsad: sibling_bin("capsad")?,
            capsa: sibling_bin("capsa")?,
            docker: docker_bin()?,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            dir,
        };
        d.spawn()?;
        Ok(d)
    }

    /// The test's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `unix://…` for DOCKER_HOST.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The daemon's command line.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.capsad);
        cmd.arg("--data-root")
            .arg(&self.root)
            .arg("--exec-root")
            .arg(&self.state)
            .arg("-H")
            .arg(self.host())
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            // No default bridge unless the test names one of its own (`capsa-test-*`).
            .args(
                (!self.extra.iter().any(|a| a == "--bridge"))
                    .then_some(["--bridge", "none"])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Starts the daemon (again) and waits for `/_ping`.
    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("capsad.log"))?;
        let child = self
            .command()
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start capsad")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = &mut self.child
                && let Some(status) = c.try_wait()?
            {
                bail!("capsad exited ({status}): {}", self.log());
            }
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.socket) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").is_ok() {
                    let mut text = String::new();
                    let _ = s.read_to_string(&mut text);
                    if text.ends_with("OK") {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("capsad did not answer /_ping: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("capsad.log")).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Whether the daemon still runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL to the daemon (by pid), reaped.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to the daemon, reaped.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("capsad is not running")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        Ok(c.wait()?)
    }

    /// A docker CLI command against this daemon (its own config dir: credentials stay in the
    /// test).
    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.docker);
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir().join("docker-config"))
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_API_VERSION")
            .env("DOCKER_BUILDKIT", "0")
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the docker CLI to completion.
    pub fn docker(&self, args: &[&str]) -> Result<CmdOutput> {
        run_captured(
            self.docker_command(args),
            &format!("docker {}", args.join(" ")),
            &self.dir().join("io"),
            COMMAND_TIMEOUT,
        )
    }

    /// Runs the docker CLI with `stdin` from a file.
    pub fn docker_with_stdin(&self, args: &[&str], stdin: &Path) -> Result<CmdOutput> {
        let mut cmd = self.docker_command(args);
        cmd.stdin(File::open(stdin)?);
        run_captured(
            cmd,
            &format!("docker {} < {}", args.join(" "), stdin.display()),
            &self.dir().join("io"),
            COMMAND_TIMEOUT,
        )
    }

    /// The capsa CLI on the same store, without a daemon.
    pub fn capsa(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut cmd = Command::new(&self.capsa);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--bridge")
            .arg("none")
            .env_remove("CAPSA_HOST")
            .args(args)
            .stdin(Stdio::null());
        run_captured(
            cmd,
            &format!("capsa {}", args.join(" ")),
            &self.dir().join("io"),
            COMMAND_TIMEOUT,
        )
    }

    /// The capsa CLI as a client of this daemon (`-H`).
    pub fn capsa_remote(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut cmd = Command::new(&self.capsa);
        cmd.arg("-H")
            .arg(self.host())
            .env("XDG_CONFIG_HOME", self.dir().join("capsa-config"))
            .args(args)
            .stdin(Stdio::null());
        run_captured(
            cmd,
            &format!("capsa -H … {}", args.join(" ")),
            &self.dir().join("io"),
            COMMAND_TIMEOUT,
        )
    }

    /// curl on the daemon's socket: `(status, body)`.
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "20",
            "-X",
            method,
        ])
        .arg("--unix-socket")
        .arg(&self.socket);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        cmd.arg(format!("http://capsa{path}"));
        let out = run_captured(
            cmd,
            &format!("curl {method} {path}"),
            &self.dir().join("io"),
            COMMAND_TIMEOUT,
        )?;
        let text = out.stdout;
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
    }

    /// Builds the busybox-static image (`/bin/busybox`, its applets, passwd and group; Cmd
    /// `sh`) as an OCI archive under the test's dir, for `docker load -i`.
    pub fn busybox_archive(&self, reference: &str) -> Result<PathBuf> {
        let ctx = crate::engine::EngineContext::new("daemon-image")?;
        let rootfs = ctx.busybox_rootfs("rootfs")?;
        let layout = ctx.oci_layout(
            "layout",
            &[&rootfs],
            serde_json::json!({
                "Cmd": ["sh"],
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            }),
            reference,
        )?;
        let archive = self
            .dir()
            .join(format!("{}.tar", reference.replace([':', '/'], "_")));
        let st = Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg(".")
            .status()?;
        if !st.success() {
            bail!("tar of the layout failed");
        }
        Ok(archive)
    }

    /// `docker ARGS` (`args` is a shell fragment) on a pseudo-terminal of `rows`x`cols` that
    /// script(1) makes, its keyboard fed by the shell fragment `input` (empty: nothing); the exit
    /// code is docker's. For `exec -it`, `run -it` and `attach`, which need a real terminal.
    pub fn docker_on_a_terminal(
        &self,
        input: &str,
        (rows, cols): (u16, u16),
        args: &str,
        what: &str,
    ) -> Result<CmdOutput> {
        let inner = format!(
            "stty rows {rows} cols {cols}; DOCKER_HOST={} DOCKER_CONFIG={} {} {args}",
            self.host(),
            self.dir().join("docker-config").display(),
            self.docker.display()
        );
        let outer = if input.is_empty() {
            "script -eqc \"$0\" /dev/null".to_string()
        } else {
            format!("({input}) | script -eqc \"$0\" /dev/null")
        };
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", &outer, &inner])
            .stdin(std::process::Stdio::null());
        run_captured(cmd, what, &self.dir().join("io"), Duration::from_secs(30))
    }

    /// `docker-compose -p PROJECT -f FILE ARGS` (Debian's 1.29) against this daemon.
    pub fn compose(&self, project: &str, file: &Path, args: &[&str]) -> Result<CmdOutput> {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p")
            .arg(project)
            .arg("-f")
            .arg(file)
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
            .env("DOCKER_CONFIG", self.dir().join("docker-config"))
            .stdin(Stdio::null());
        run_captured(
            cmd,
            &format!("docker-compose {}", args.join(" ")),
            &self.dir().join("io"),
            Duration::from_secs(90),
        )
    }

    /// `docker load` of the busybox image, named `reference`.
    pub fn load_busybox(&self, reference: &str) -> Result<()> {
        let archive = self.busybox_archive(reference)?;
        let a = archive.to_string_lossy().into_owned();
        let out = self.docker(&["load", "-i", &a])?.ok()?;
        if !out.stdout.contains("Loaded image") {
            bail!("docker load said nothing of a loaded image: {out}");
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Containers first (through the engine: it stops monitors and unmounts), then what is
        // left: processes with this test's root on their command line, the cgroup parent,
        // mounts below the test's dir, and the daemon itself by pid.
        if let Ok(out) = self.capsa(&["ps", "-aq"]) {
            for id in out.stdout.split_whitespace() {
                let _ = self.capsa(&["rm", "-f", id]);
            }
        }
        if self.state.join("keepers").exists() {
            let _ = self.capsa(&["network", "prune", "-f"]);
        }
        self.kill9();
        cleanup::engine_leftovers(self.dir(), &self.root, &self.cgroup_parent);
    }
}
