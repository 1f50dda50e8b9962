//! The per-container monitor (conmon's role): the `capsa-monitor` process, exec'd by whoever
//! starts a container (the CLI or the daemon, neither of which forks it: the daemon is
//! multi-threaded), detached by `setsid` and a fork of its own, that creates and starts the
//! container in-process (so it is the init's parent) and stays with it:
//!
//! - holds the payload's stdio: pipes for stdout/stderr (and stdin with `-i`), or the pty
//!   master with `-t`; writes Docker json-file lines; serves attach clients on its socket
//!   (`engine::attach`), including those handed over at start (`docker run`);
//! - reaps the init (through a pidfd), records the exit, deletes the runtime container;
//! - runs the healthcheck at its interval and records `health.json`;
//! - restarts the payload by its restart policy with Docker's back-off;
//! - cleans up (unmount; with `--rm`, the container).
//!
//! It holds `flock` on `<container>/monitor.lock` for its lifetime: "the monitor is alive" is
//! a lock test, true even right after a daemon was SIGKILLed. Everything it does survives the
//! process that started it. It is single-threaded (a poll loop), so it may fork the init and
//! the healthcheck's process.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};
use serde::{Deserialize, Serialize};

use super::attach::{self, Hello};
use super::container::{ContainerRecord, ExitRecord, now_rfc3339, read_json, write_atomic};
use super::error::{EngineError, IoContext, Result, SysContext, invalid};
use super::{Engine, lifecycle, spec};
use crate::runtime::{self, CreateOptions, ExecOptions, ProcessFlags, ProcessSource};
use crate::sys::pidfd::PidFd;

/// The monitor's binary, beside the running executable (`CAPSA_MONITOR` overrides).
pub fn monitor_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CAPSA_MONITOR") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().io("locate", "/proc/self/exe")?;
    let bin = exe.with_file_name("capsa-monitor");
    if !bin.is_file() {
        return Err(invalid(
            "capsa-monitor",
            format!(
                "not found beside {} (it is built and installed with capsa)",
                exe.display()
            ),
        ));
    }
    Ok(bin)
}

/// What the monitor records about its runs (`run.json`), written only by the monitor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunState {
    /// When the payload last started (RFC 3339).
    pub started: String,
    /// Restarts by the restart policy since the last manual start.
    pub restart_count: i64,
    /// Waiting out a restart back-off.
    pub restarting: bool,
}

/// Docker's `State.Health`, as `health.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// `starting`, `healthy`, `unhealthy`.
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "FailingStreak")]
    pub failing_streak: i64,
    #[serde(rename = "Log")]
    pub log: Vec<HealthLog>,
}

/// One probe's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HealthLog {
    #[serde(rename = "Start")]
    pub start: String,
    #[serde(rename = "End")]
    pub end: String,
    #[serde(rename = "ExitCode")]
    pub exit_code: i64,
    #[serde(rename = "Output")]
    pub output: String,
}

/// Marker written by `stop`/`kill`: the exit that follows must not restart the container.
pub(crate) const STOPPED_MARKER: &str = "stopped-by-user";

/// Starts the monitor of container `c` (exec'd, never forked from the caller) and returns once
/// the payload runs, or with the error that stopped it. `attach` are client connections to
/// serve from the first byte of output (one end of a socketpair each, hello already sent).
pub(crate) fn spawn(engine: &Engine, c: &ContainerRecord, attach: Vec<OwnedFd>) -> Result<()> {
    let bin = monitor_binary()?;
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).sys(|| "pipe2".to_owned())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--root")
        .arg(&engine.root)
        .arg("--state")
        .arg(&engine.state)
        .arg("--id")
        .arg(&c.id)
        .arg("--report-fd")
        .arg("3");
    for i in 0..attach.len() {
        cmd.arg("--attach-fd").arg((4 + i).to_string());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut sources: Vec<RawFd> = vec![report_w.as_raw_fd()];
    sources.extend(attach.iter().map(|f| f.as_raw_fd()));
    // SAFETY: between fork and exec the closure only calls fcntl(2) and dup2(2), which are
    // async-signal-safe, and allocates nothing: safe in a multi-threaded parent.
    unsafe {
        cmd.pre_exec(move || {
            let mut temps = [0 as RawFd; 64];
            for (i, fd) in sources.iter().enumerate().take(temps.len()) {
                let t = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if t < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                temps[i] = t;
            }
            for (i, t) in temps.iter().take(sources.len()).enumerate() {
                if libc::dup2(*t, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().io("exec", &bin)?;
    drop(report_w);
    drop(attach);
    // The first process forks the real monitor and exits at once.
    let _ = child.wait();
    let mut text = String::new();
    let _ = std::fs::File::from(report_r).read_to_string(&mut text);
    match text.strip_prefix("ok") {
        Some(_) => Ok(()),
        None if text.is_empty() => Err(EngineError::Conflict(format!(
            "the monitor of container {} died before starting it",
            c.name
        ))),
        None => Err(EngineError::StartFailed(text)),
    }
}

/// `capsa-monitor --root R --state S --id ID --report-fd N [--attach-fd N]...`: the monitor's
/// entry point (the binary is this call). Returns the exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    if args.first().map(String::as_str) == Some("--userns-holder") {
        return super::userns::hold();
    }
    let mut root = None;
    let mut state = None;
    let mut id = None;
    let mut report = None;
    let mut attach = Vec::new();
    let mut exec = None;
    let mut console = None;
    let mut reap_bridges = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--root" => root = Some(PathBuf::from(value())),
            "--state" => state = Some(PathBuf::from(value())),
            "--id" => id = Some(value()),
            "--report-fd" => report = value().parse::<RawFd>().ok(),
            "--attach-fd" => attach.extend(value().parse::<RawFd>().ok()),
            "--exec" => exec = Some(value()),
            "--console-socket" => console = Some(PathBuf::from(value())),
            "--reap-bridges" => reap_bridges = true,
            other => {
                eprintln!("capsa-monitor: unknown argument {other:?}");
                return 2;
            }
        }
    }
    let (Some(root), Some(state)) = (root, state) else {
        eprintln!(
            "capsa-monitor: usage: capsa-monitor --root R --state S (--id ID --report-fd N [--attach-fd N]... | --exec EXEC_ID [--console-socket PATH] | --reap-bridges)"
        );
        return 2;
    };
    if reap_bridges {
        return super::network::keeper::reaper_main(&root, &state);
    }
    if let Some(exec_id) = exec {
        return super::exec_records::helper_main(&root, &state, &exec_id, console.as_deref());
    }
    let (Some(id), Some(report)) = (id, report) else {
        eprintln!("capsa-monitor: --id and --report-fd are required");
        return 2;
    };
    // SAFETY: the caller handed these descriptors over (the contract above); nothing else in
    // this fresh process owns them.
    let report = unsafe { OwnedFd::from_raw_fd(report) };
    let attach: Vec<OwnedFd> = attach
        .into_iter()
        // SAFETY: as above.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    for fd in std::iter::once(&report).chain(attach.iter()) {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    let _ = setsid();
    // SAFETY: this process was just exec'd and has started no thread.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {}
        Ok(ForkResult::Parent { .. }) => return 0,
        Err(e) => {
            let _ =
                std::fs::File::from(report).write_all(format!("fork the monitor: {e}").as_bytes());
            return 1;
        }
    }
    let _ = std::env::set_current_dir("/");
    let mut report = std::fs::File::from(report);
    let engine = match Engine::open(&root, &state) {
        Ok(e) => e,
        Err(e) => {
            let _ = report.write_all(format!("monitor: {e}").as_bytes());
            return 1;
        }
    };
    let c = match engine.container(&id) {
        Ok(c) => c,
        Err(e) => {
            let _ = report.write_all(format!("monitor: {e}").as_bytes());
            return 1;
        }
    };
    match Monitor::new(&engine, c, attach) {
        Ok(mut m) => m.run(report),
        Err(e) => {
            let _ = report.write_all(e.to_string().as_bytes());
            1
        }
    }
}

/// One attached client.
struct Client {
    stream: UnixStream,
    hello: Option<Hello>,
    /// Bytes read before the hello line was complete.
    pending: Vec<u8>,
    out: Vec<u8>,
    /// The client shut down its side (no more stdin).
    read_closed: bool,
}

/// Output beyond this much queued for one client drops it (a stalled reader must not stall the
/// payload or the monitor).
const CLIENT_BUFFER_MAX: usize = 8 << 20;

impl Client {
    /// A client whose hello line is read now (it sends it first thing; a second at most), so
    /// that no output reaches the monitor before it knows what the client wants.
    fn new(stream: UnixStream) -> Client {
        let mut client = Client {
            stream,
            hello: None,
            pending: Vec::new(),
            out: Vec::new(),
            read_closed: false,
        };
        let _ = client.stream.set_nonblocking(false);
        let _ = client.stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut byte = [0u8; 1];
        while client.pending.len() < 4096 {
            match client.stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => {
                    client.hello = serde_json::from_slice(&client.pending).ok();
                    client.pending.clear();
                    break;
                }
                Ok(1) => client.pending.push(byte[0]),
                _ => break,
            }
        }
        let _ = client.stream.set_read_timeout(None);
        let _ = client.stream.set_nonblocking(true);
        client
    }

    fn wants(&self, stream: u8) -> bool {
        self.hello.as_ref().is_some_and(|h| match stream {
            attach::STDERR => h.stderr,
            _ => h.stdout,
        })
    }

    /// Writes what is queued; false when the client is gone.
    fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// One output stream of the payload.
struct Output {
    stream: u8,
    fd: Option<OwnedFd>,
    partial: Vec<u8>,
}

/// The running payload.
struct Payload {
    pid: Pid,
    pidfd: PidFd,
    outputs: Vec<Output>,
    /// Where stdin bytes go: the pipe's write end, or the pty master.
    stdin: Option<OwnedFd>,
    stdin_queue: Vec<u8>,
    master: Option<OwnedFd>,
    started: Instant,
    started_at: String,
    exit: Option<(i32, Instant)>,
}

/// A healthcheck probe in progress.
struct Probe {
    pid: Pid,
    pidfd: PidFd,
    out: Option<OwnedFd>,
    output: Vec<u8>,
    start: String,
    deadline: Instant,
}

/// The healthcheck's schedule and state.
struct Checker {
    check: spec::Healthcheck,
    health: Health,
    next: Instant,
    probe: Option<Probe>,
    started: Instant,
    /// A probe succeeded: the start period is over (Docker's rule), failures count from now.
    succeeded: bool,
}

impl Checker {
    fn interval(&self) -> Duration {
        Duration::from_nanos(if self.check.interval > 0 {
            self.check.interval as u64
        } else {
            30_000_000_000
        })
    }
    fn timeout(&self) -> Duration {
        Duration::from_nanos(if self.check.timeout > 0 {
            self.check.timeout as u64
        } else {
            30_000_000_000
        })
    }
    fn in_start_period(&self) -> bool {
        !self.succeeded
            && self.started.elapsed() < Duration::from_nanos(self.check.start_period.max(0) as u64)
    }
    /// The wait before the next probe: the start interval during the start period (when set),
    /// else the interval.
    fn gap(&self) -> Duration {
        if self.in_start_period() && self.check.start_interval > 0 {
            Duration::from_nanos(self.check.start_interval as u64)
        } else {
            self.interval()
        }
    }
}

struct Monitor<'a> {
    engine: &'a Engine,
    c: ContainerRecord,
    dir: PathBuf,
    log: Option<std::fs::File>,
    listener: Option<UnixListener>,
    socket: PathBuf,
    clients: Vec<Client>,
    null: std::fs::File,
    _lock: std::fs::File,
}

impl<'a> Monitor<'a> {
    fn new(engine: &'a Engine, c: ContainerRecord, attach: Vec<OwnedFd>) -> Result<Monitor<'a>> {
        let dir = engine.bundle_dir(&c);
        let lock_path = dir.join("monitor.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .io("open", &lock_path)?;
        if nix::fcntl::Flock::lock(
            lock.try_clone().io("dup", &lock_path)?,
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .map(std::mem::forget)
        .is_err()
        {
            return Err(EngineError::Conflict(format!(
                "container {} already has a monitor",
                c.name
            )));
        }
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .io("open", "/dev/null")?;
        let socket = attach::socket_path(&engine.state, &c.id);
        if let Some(parent) = socket.parent() {
            // Only root may attach to a container, whatever the umask: the directory is 0700.
            std::fs::create_dir_all(parent).io("mkdir", parent)?;
            std::fs::set_permissions(parent, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .io("chmod 0700", parent)?;
        }
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).io("bind", &socket)?;
        let _ = listener.set_nonblocking(true);
        let log = match c.options.log_driver.as_deref() {
            Some("none") => None,
            _ => {
                let path = engine.log_path(&c);
                Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .io("open", &path)?,
                )
            }
        };
        let clients = attach
            .into_iter()
            .map(|fd| Client::new(UnixStream::from(fd)))
            .collect();
        Ok(Monitor {
            engine,
            c,
            dir,
            log,
            listener: Some(listener),
            socket,
            clients,
            null,
            _lock: lock,
        })
    }

    /// The whole life: start, supervise, restart by policy, clean up.
    fn run(&mut self, report: std::fs::File) -> i32 {
        let mut report = Some(report);
        let mut state = RunState::default();
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut payload = match self.start_payload() {
                Ok(p) => p,
                Err(e) => {
                    if let Some(mut r) = report.take() {
                        let _ = r.write_all(e.to_string().as_bytes());
                        self.cleanup();
                        return 1;
                    }
                    // A restart that fails to start ends the monitor, with the error recorded.
                    let _ = self.engine.write_exit(
                        &self.c,
                        &ExitRecord {
                            code: 128,
                            started: state.started.clone(),
                            finished: now_rfc3339(),
                            error: Some(e.to_string()),
                        },
                    );
                    self.engine
                        .emit_container(&self.c, "die", &[("exitCode", "128".to_owned())]);
                    break;
                }
            };
            state.started = payload.started_at.clone();
            state.restarting = false;
            self.write_state(&state);
            self.engine.emit_container(&self.c, "start", &[]);
            if let Some(mut r) = report.take() {
                let _ = r.write_all(b"ok");
            }
            let mut checker = self.checker();
            self.supervise(&mut payload, &mut checker);
            let code = payload.exit.map_or(255, |(c, _)| c);
            self.finish_clients();
            let _ = self.engine.write_exit(
                &self.c,
                &ExitRecord {
                    code,
                    started: payload.started_at.clone(),
                    finished: now_rfc3339(),
                    error: None,
                },
            );
            let _ = runtime::delete(&self.engine.runtime, &self.c.id, true);
            self.engine
                .emit_container(&self.c, "die", &[("exitCode", code.to_string())]);
            let ran = payload.started.elapsed();
            drop(payload);
            if !self.should_restart(code, state.restart_count) {
                break;
            }
            // Docker's back-off: 100 ms doubling up to a minute, reset after 10 s of running.
            if ran >= Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            state.restarting = true;
            self.write_state(&state);
            if !self.sleep_unless_stopped(backoff) {
                break;
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
            state.restart_count += 1;
        }
        state.restarting = false;
        self.write_state(&state);
        self.cleanup();
        0
    }

    fn write_state(&self, state: &RunState) {
        if let Ok(bytes) = serde_json::to_vec(state) {
            let _ = write_atomic(&self.dir.join("run.json"), &bytes);
        }
    }

    /// Whether the policy restarts after an exit with `code`.
    fn should_restart(&self, code: i32, restarts: i64) -> bool {
        if self.dir.join(STOPPED_MARKER).exists() {
            return false;
        }
        let policy = &self.c.options.restart;
        match policy.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                code != 0
                    && (policy.maximum_retry_count == 0 || restarts < policy.maximum_retry_count)
            }
            _ => false,
        }
    }

    /// Sleeps `d`, waking early (and returning false) when a `stop` marks the container.
    fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.dir.join(STOPPED_MARKER).exists() {
                return false;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
        }
        !self.dir.join(STOPPED_MARKER).exists()
    }

    fn checker(&self) -> Option<Checker> {
        let check = self.c.healthcheck.clone()?;
        let health = Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        };
        self.write_health(&health);
        let mut checker = Checker {
            check,
            health,
            next: Instant::now(),
            probe: None,
            started: Instant::now(),
            succeeded: false,
        };
        checker.next = Instant::now() + checker.gap();
        Some(checker)
    }

    fn write_health(&self, health: &Health) {
        if let Ok(bytes) = serde_json::to_vec(health) {
            let _ = write_atomic(&self.dir.join("health.json"), &bytes);
        }
    }

    /// Creates and starts the container with this process's stdio pointed at the payload's
    /// pipes (or pty), then gives them back to /dev/null.
    fn start_payload(&mut self) -> Result<Payload> {
        self.engine.prepare_start(&self.c)?;
        let c = &self.c;
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).sys(|| "pipe2".to_owned())?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).sys(|| "pipe2".to_owned())?;
        let stdin_pipe = if c.options.interactive && !c.tty {
            Some(pipe2(OFlag::O_CLOEXEC).sys(|| "pipe2".to_owned())?)
        } else {
            None
        };
        match &stdin_pipe {
            Some((r, _)) => nix::unistd::dup2_stdin(r),
            None => nix::unistd::dup2_stdin(&self.null),
        }
        .sys(|| "dup2".to_owned())?;
        nix::unistd::dup2_stdout(&out_w).sys(|| "dup2".to_owned())?;
        nix::unistd::dup2_stderr(&err_w).sys(|| "dup2".to_owned())?;
        let options = CreateOptions {
            id: c.id.clone(),
            bundle: self.engine.container_dir(&c.id),
            ..CreateOptions::default()
        };
        let started = (|| {
            let (created, master) =
                runtime::create_holding_terminal(&self.engine.runtime, &options)?;
            let pid = created.record.pid;
            drop(created);
            if let Err(e) = runtime::start(&self.engine.runtime, &c.id) {
                let _ = waitpid(Pid::from_raw(pid), None);
                let _ = runtime::delete(&self.engine.runtime, &c.id, true);
                return Err(e);
            }
            Ok((pid, master))
        })();
        // Only the payload holds its ends from now on.
        let _ = nix::unistd::dup2_stdin(&self.null);
        let _ = nix::unistd::dup2_stdout(&self.null);
        let _ = nix::unistd::dup2_stderr(&self.null);
        drop(out_w);
        drop(err_w);
        let (pid, master) = started?;
        let pidfd = PidFd::open(pid)?;
        let (outputs, stdin) = match master {
            Some(master) => {
                let input = if c.options.interactive {
                    Some(master.try_clone().io("dup", "pty master")?)
                } else {
                    None
                };
                (
                    vec![Output {
                        stream: attach::STDOUT,
                        fd: Some(master.try_clone().io("dup", "pty master")?),
                        partial: Vec::new(),
                    }],
                    input,
                )
            }
            None => (
                vec![
                    Output {
                        stream: attach::STDOUT,
                        fd: Some(out_r),
                        partial: Vec::new(),
                    },
                    Output {
                        stream: attach::STDERR,
                        fd: Some(err_r),
                        partial: Vec::new(),
                    },
                ],
                stdin_pipe.map(|(_, w)| w),
            ),
        };
        // With a terminal the pipes were not used; the master serves both directions.
        let master_keep = match (&outputs[..], c.tty) {
            ([o], true) => o.fd.as_ref().and_then(|f| f.try_clone().ok()),
            _ => None,
        };
        if let Some(fd) = &stdin {
            let _ = fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        }
        Ok(Payload {
            pid: Pid::from_raw(pid),
            pidfd,
            outputs,
            stdin,
            stdin_queue: Vec::new(),
            master: master_keep,
            started: Instant::now(),
            started_at: now_rfc3339(),
            exit: None,
        })
    }

    /// The poll loop of one run: output, clients, the exit, the healthcheck.
    fn supervise(&mut self, p: &mut Payload, checker: &mut Option<Checker>) {
        loop {
            let open_outputs = p.outputs.iter().filter(|o| o.fd.is_some()).count();
            if let Some((_, at)) = p.exit
                && (open_outputs == 0 || at.elapsed() > Duration::from_secs(1))
            {
                break;
            }
            // Build the poll set: [pidfd?] [outputs] [listener] [stdin?] [clients] [probe?]
            let mut fds: Vec<PollFd> = Vec::new();
            let mut kinds: Vec<(u8, usize)> = Vec::new();
            if p.exit.is_none() {
                fds.push(PollFd::new(p.pidfd.as_fd(), PollFlags::POLLIN));
                kinds.push((0, 0));
            }
            for (i, o) in p.outputs.iter().enumerate() {
                if let Some(fd) = &o.fd {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                    kinds.push((1, i));
                }
            }
            if let Some(l) = &self.listener {
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                kinds.push((2, 0));
            }
            if let Some(fd) = &p.stdin
                && !p.stdin_queue.is_empty()
            {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                kinds.push((3, 0));
            }
            for (i, cl) in self.clients.iter().enumerate() {
                let mut flags = PollFlags::empty();
                if !cl.read_closed {
                    flags |= PollFlags::POLLIN;
                }
                if !cl.out.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(cl.stream.as_fd(), flags));
                kinds.push((4, i));
            }
            if let Some(probe) = checker.as_ref().and_then(|c| c.probe.as_ref()) {
                fds.push(PollFd::new(probe.pidfd.as_fd(), PollFlags::POLLIN));
                kinds.push((5, 0));
                if let Some(out) = &probe.out {
                    fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
                    kinds.push((6, 0));
                }
            }
            let mut timeout = if p.exit.is_some() {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(3600)
            };
            if let Some(ch) = checker.as_ref() {
                let due = match &ch.probe {
                    Some(pr) => pr.deadline,
                    None => ch.next,
                };
                timeout = timeout.min(due.saturating_duration_since(Instant::now()));
            }
            let ms = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
            let _ = poll(&mut fds, PollTimeout::from(ms));
            let ready: Vec<((u8, usize), PollFlags)> = fds
                .iter()
                .zip(kinds.iter())
                .filter_map(|(f, k)| f.revents().filter(|r| !r.is_empty()).map(|r| (*k, r)))
                .collect();
            drop(fds);
            let mut drop_clients = Vec::new();
            for ((kind, i), revents) in ready {
                match kind {
                    0 => self.reap(p),
                    1 => self.pump(p, i),
                    2 => self.accept(p),
                    3 => write_stdin(p),
                    4 if !self.serve_client(p, i, revents) => drop_clients.push(i),
                    5 | 6 => {}
                    _ => {}
                }
            }
            drop_clients.sort_unstable();
            for i in drop_clients.into_iter().rev() {
                self.clients.remove(i);
            }
            if p.exit.is_none() {
                // A SIGCHLD-free check: the pidfd may have been missed between polls.
                self.reap(p);
            }
            if let Some(ch) = checker.as_mut() {
                self.health_step(ch, p.exit.is_none());
            }
        }
        // What is left in the streams' partial lines.
        for i in 0..p.outputs.len() {
            if !p.outputs[i].partial.is_empty() {
                let bytes = std::mem::take(&mut p.outputs[i].partial);
                let stream = p.outputs[i].stream;
                self.log_line(stream, &bytes);
            }
        }
        if let Some(ch) = checker.as_mut()
            && let Some(probe) = ch.probe.take()
        {
            let _ = probe.pidfd.signal(libc::SIGKILL);
            let _ = waitpid(probe.pid, None);
        }
    }

    fn reap(&mut self, p: &mut Payload) {
        if p.exit.is_some() {
            return;
        }
        match waitpid(p.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => p.exit = Some((code, Instant::now())),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                p.exit = Some((128 + sig as i32, Instant::now()))
            }
            Err(nix::errno::Errno::ECHILD) => p.exit = Some((255, Instant::now())),
            _ => {}
        }
        if p.exit.is_some() {
            // Reap anything else that was ours (a first exec child, a stray probe).
            while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
                waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))
            {}
        }
    }

    /// Reads one output stream: json-file lines, and the bytes to every client that wants them.
    fn pump(&mut self, p: &mut Payload, i: usize) {
        let Some(fd) = &p.outputs[i].fd else { return };
        let mut buf = [0u8; 32768];
        match nix::unistd::read(fd, &mut buf) {
            // A pty master reads EIO once the last slave is closed: its end of file.
            Ok(0) | Err(nix::errno::Errno::EBADF | nix::errno::Errno::EIO) => {
                p.outputs[i].fd = None;
            }
            Ok(n) => {
                let bytes = &buf[..n];
                let stream = p.outputs[i].stream;
                let tty = self.c.tty;
                for cl in &mut self.clients {
                    if cl.wants(stream) {
                        if tty {
                            cl.out.extend_from_slice(bytes);
                        } else {
                            cl.out.extend_from_slice(&attach::frame(stream, bytes));
                        }
                        cl.flush();
                    }
                }
                self.clients.retain(|c| c.out.len() <= CLIENT_BUFFER_MAX);
                p.outputs[i].partial.extend_from_slice(bytes);
                while let Some(pos) = p.outputs[i].partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = p.outputs[i].partial.drain(..=pos).collect();
                    self.log_line(stream, &line);
                }
                // A very long line without a newline is logged in pieces, as Docker does.
                if p.outputs[i].partial.len() >= 16384 {
                    let line = std::mem::take(&mut p.outputs[i].partial);
                    self.log_line(stream, &line);
                }
            }
            Err(_) => {}
        }
    }

    fn log_line(&mut self, stream: u8, bytes: &[u8]) {
        let Some(log) = &mut self.log else { return };
        let line = serde_json::json!({
            "log": String::from_utf8_lossy(bytes),
            "stream": if stream == attach::STDERR { "stderr" } else { "stdout" },
            "time": now_rfc3339(),
        });
        let _ = writeln!(log, "{line}");
    }

    /// Takes new clients; a resize is answered at once.
    fn accept(&mut self, p: &Payload) {
        let Some(l) = &self.listener else { return };
        while let Ok((stream, _)) = l.accept() {
            let mut client = Client::new(stream);
            if let Some((rows, cols)) = client.hello.as_ref().and_then(|h| h.resize) {
                let answer = match &p.master {
                    Some(m) => match attach::set_window_size(m, rows, cols) {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => format!("resize: {e}"),
                    },
                    None => "ok".to_owned(),
                };
                let _ = client.stream.set_nonblocking(false);
                let _ = client.stream.write_all(answer.as_bytes());
                continue;
            }
            self.clients.push(client);
        }
    }

    /// Reads a client's hello or stdin, writes its queued output; false to drop it.
    fn serve_client(&mut self, p: &mut Payload, i: usize, revents: PollFlags) -> bool {
        let tty = self.c.tty;
        let stdin_once = self.c.options.stdin_once;
        let cl = &mut self.clients[i];
        if revents.contains(PollFlags::POLLOUT) && !cl.flush() {
            return false;
        }
        if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) && !cl.read_closed {
            let mut buf = [0u8; 16384];
            match cl.stream.read(&mut buf) {
                Ok(0) => {
                    cl.read_closed = true;
                    let had_stdin = cl.hello.as_ref().is_some_and(|h| h.stdin);
                    if had_stdin && stdin_once && !tty {
                        // Queued bytes first, then end of file for the payload.
                        write_stdin(p);
                        p.stdin = None;
                    }
                    if cl.hello.is_none() {
                        return false;
                    }
                }
                Ok(n) => {
                    let data: Vec<u8> = if cl.hello.is_some() {
                        buf[..n].to_vec()
                    } else {
                        cl.pending.extend_from_slice(&buf[..n]);
                        let Some(pos) = cl.pending.iter().position(|&b| b == b'\n') else {
                            return cl.pending.len() < 4096;
                        };
                        let hello: Hello = match serde_json::from_slice(&cl.pending[..pos]) {
                            Ok(h) => h,
                            Err(_) => return false,
                        };
                        let rest = cl.pending.split_off(pos + 1);
                        cl.pending.clear();
                        if let Some((rows, cols)) = hello.resize {
                            let answer = match &p.master {
                                Some(m) => match attach::set_window_size(m, rows, cols) {
                                    Ok(()) => "ok".to_owned(),
                                    Err(e) => format!("resize: {e}"),
                                },
                                None => "ok".to_owned(),
                            };
                            let _ = cl.stream.set_nonblocking(false);
                            let _ = cl.stream.write_all(answer.as_bytes());
                            return false;
                        }
                        cl.hello = Some(hello);
                        rest
                    };
                    if cl.hello.as_ref().is_some_and(|h| h.stdin) && p.stdin.is_some() {
                        p.stdin_queue.extend_from_slice(&data);
                        write_stdin(p);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
        }
        if revents.contains(PollFlags::POLLERR) {
            return false;
        }
        // A client that hung up and has nothing left to receive.
        !(revents.contains(PollFlags::POLLHUP) && self.clients[i].read_closed)
    }

    /// Sends every client what is queued (waiting a little), then closes them: the payload has
    /// exited.
    fn finish_clients(&mut self) {
        for mut cl in self.clients.drain(..) {
            let _ = cl.stream.set_nonblocking(false);
            let _ = cl.stream.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = cl.stream.write_all(&cl.out);
            let _ = cl.stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Starts a due probe, or finishes one that ended or timed out.
    fn health_step(&self, ch: &mut Checker, running: bool) {
        if let Some(probe) = &mut ch.probe {
            if let Some(out) = &probe.out {
                let mut buf = [0u8; 4096];
                match nix::unistd::read(out, &mut buf) {
                    Ok(0) => probe.out = None,
                    Ok(n) => {
                        if probe.output.len() < 4096 {
                            probe
                                .output
                                .extend_from_slice(&buf[..n.min(4096 - probe.output.len())]);
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN) => {}
                    Err(_) => probe.out = None,
                }
            }
            let status = waitpid(probe.pid, Some(WaitPidFlag::WNOHANG));
            let result = match status {
                Ok(WaitStatus::Exited(_, code)) => Some((code as i64, None)),
                Ok(WaitStatus::Signaled(_, sig, _)) => Some((128 + sig as i64, None)),
                Err(_) => Some((-1, None)),
                _ if Instant::now() >= probe.deadline => {
                    let _ = probe.pidfd.signal(Signal::SIGKILL as i32);
                    let _ = waitpid(probe.pid, None);
                    Some((
                        -1,
                        Some(format!(
                            "Health check exceeded timeout ({}s)",
                            ch.timeout().as_secs_f64()
                        )),
                    ))
                }
                _ => None,
            };
            if let Some((code, message)) = result {
                let Some(probe) = ch.probe.take() else { return };
                let output =
                    message.unwrap_or_else(|| String::from_utf8_lossy(&probe.output).into_owned());
                self.record_probe(ch, probe.start, code, output);
                ch.next = Instant::now() + ch.gap();
            }
            return;
        }
        if running && Instant::now() >= ch.next {
            match self.start_probe(ch) {
                Ok(probe) => ch.probe = Some(probe),
                Err(e) => {
                    self.record_probe(ch, now_rfc3339(), -1, e.to_string());
                    ch.next = Instant::now() + ch.gap();
                }
            }
        }
    }

    fn record_probe(&self, ch: &mut Checker, start: String, code: i64, output: String) {
        let before = ch.health.status.clone();
        let retries = if ch.check.retries > 0 {
            ch.check.retries
        } else {
            3
        };
        if code == 0 {
            ch.health.failing_streak = 0;
            ch.health.status = "healthy".into();
            ch.succeeded = true;
        } else if !ch.in_start_period() {
            ch.health.failing_streak += 1;
            if ch.health.failing_streak >= retries {
                ch.health.status = "unhealthy".into();
            }
        }
        ch.health.log.push(HealthLog {
            start,
            end: now_rfc3339(),
            exit_code: code,
            output,
        });
        if ch.health.log.len() > 5 {
            ch.health.log.remove(0);
        }
        self.write_health(&ch.health);
        if before != ch.health.status {
            self.engine.emit_container(
                &self.c,
                &format!("health_status: {}", ch.health.status),
                &[],
            );
        }
    }

    /// Runs the healthcheck's command in the container (as `exec` does), its output captured.
    fn start_probe(&self, ch: &Checker) -> Result<Probe> {
        let args: Vec<String> = match ch.check.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), ch.check.test[1..].join(" ")],
            _ => ch.check.test[1..].to_vec(),
        };
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).sys(|| "pipe2".to_owned())?;
        let _ = fcntl(&out_r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        let pid_file = self.dir.join("health.pid");
        nix::unistd::dup2_stdout(&out_w).sys(|| "dup2".to_owned())?;
        nix::unistd::dup2_stderr(&out_w).sys(|| "dup2".to_owned())?;
        let start = now_rfc3339();
        let result = runtime::exec(
            &self.engine.runtime,
            &ExecOptions {
                id: self.c.id.clone(),
                process: ProcessSource::Flags(ProcessFlags {
                    args,
                    ..ProcessFlags::default()
                }),
                detach: true,
                pid_file: Some(pid_file.clone()),
                console_socket: None,
                preserve_fds: 0,
            },
        );
        let _ = nix::unistd::dup2_stdout(&self.null);
        let _ = nix::unistd::dup2_stderr(&self.null);
        drop(out_w);
        result?;
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .io("read", &pid_file)?
            .trim()
            .parse()
            .map_err(|_| invalid("health.pid", "not a pid"))?;
        let _ = std::fs::remove_file(&pid_file);
        Ok(Probe {
            pid: Pid::from_raw(pid),
            pidfd: PidFd::open(pid)?,
            out: Some(out_r),
            output: Vec::new(),
            start,
            deadline: Instant::now() + ch.timeout(),
        })
    }

    /// The end of the monitor: unmount, close the socket, and with `--rm` remove the container.
    fn cleanup(&mut self) {
        self.finish_clients();
        self.listener = None;
        let _ = std::fs::remove_file(&self.socket);
        let _ = runtime::delete(&self.engine.runtime, &self.c.id, true);
        self.engine.network_down(&self.c);
        let _ = lifecycle::unmount(&self.engine.rootfs_dir(&self.c));
        if self.c.auto_remove && self.engine.remove_files(&self.c).is_ok() {
            self.engine.remove_anonymous_volumes(&self.c);
            self.engine.emit_container(&self.c, "destroy", &[]);
        }
    }
}

/// Writes what can be written of the queued stdin bytes.
fn write_stdin(p: &mut Payload) {
    let Some(fd) = &p.stdin else {
        p.stdin_queue.clear();
        return;
    };
    while !p.stdin_queue.is_empty() {
        match nix::unistd::write(fd, &p.stdin_queue) {
            Ok(n) => {
                p.stdin_queue.drain(..n);
            }
            Err(nix::errno::Errno::EAGAIN) => return,
            Err(_) => {
                p.stdin_queue.clear();
                p.stdin = None;
                return;
            }
        }
    }
}

impl Engine {
    /// The monitor's `run.json` (a container never started has none).
    pub fn run_state(&self, c: &ContainerRecord) -> RunState {
        read_json(&self.container_dir(&c.id).join("run.json")).unwrap_or_default()
    }

    /// The container's health (`None` without a healthcheck or before its first start).
    pub fn health(&self, c: &ContainerRecord) -> Option<Health> {
        c.healthcheck.as_ref()?;
        read_json(&self.container_dir(&c.id).join("health.json")).ok()
    }

    /// Whether a monitor holds the container (it is running, or waiting to restart it).
    pub fn monitor_alive(&self, c: &ContainerRecord) -> bool {
        let path = self.container_dir(&c.id).join("monitor.lock");
        let Ok(file) = std::fs::File::open(&path) else {
            return false;
        };
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock).is_err()
    }

    /// Marks the container as stopped by a user (its monitor will not restart it), or clears
    /// the mark (a manual start).
    pub(crate) fn mark_stopped(&self, c: &ContainerRecord, stopped: bool) {
        let path = self.container_dir(&c.id).join(STOPPED_MARKER);
        if stopped {
            let _ = std::fs::write(&path, b"");
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}
