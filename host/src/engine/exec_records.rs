//! Exec instances, Docker's two-step exec (`POST /containers/{id}/exec`, then
//! `/exec/{id}/start`): a record per instance under `<state>/execs/`, and the helper process
//! that runs one. The daemon is multi-threaded and must not fork, so it execs `capsa-monitor
//! --exec ID`, which calls [`Engine::exec`] (the one implementation the CLI calls in-process)
//! with the stdio the daemon gave it, or a console socket for a terminal, and records the exit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::{Deserialize, Serialize};

use super::Engine;
use super::container::{ContainerRecord, random_id, read_json, write_atomic};
use super::error::{EngineError, IoContext, Result, invalid};
use super::lifecycle::ExecRequest;

/// What `exec create` was asked, in Docker's `ExecConfig` terms.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub privileged: bool,
    pub detach_keys: String,
}

/// One exec instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    /// `start` was called (an instance starts once).
    #[serde(default)]
    pub started: bool,
    /// The exit code once it has exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
}

impl Engine {
    fn execs_dir(&self) -> PathBuf {
        self.state.join("execs")
    }

    fn exec_path(&self, id: &str) -> Result<PathBuf> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EngineError::NoSuchExec(id.to_owned()));
        }
        Ok(self.execs_dir().join(format!("{id}.json")))
    }

    fn write_exec(&self, r: &ExecRecord) -> Result<()> {
        let bytes = serde_json::to_vec(r).map_err(|e| invalid("exec", e.to_string()))?;
        std::fs::create_dir_all(self.execs_dir()).io("mkdir", self.execs_dir())?;
        write_atomic(&self.exec_path(&r.id)?, &bytes)
    }

    /// `exec create`: checks the container runs and the command is there; records the instance.
    pub fn exec_create(&self, c: &ContainerRecord, config: ExecConfig) -> Result<ExecRecord> {
        if self.state(c).0 != super::State::Running {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        if config.cmd.is_empty() {
            return Err(invalid("exec", "no command specified"));
        }
        if config.privileged {
            return Err(invalid("exec --privileged", "not supported yet"));
        }
        super::spec::check(&super::RunOptions {
            env: config.env.clone(),
            ..super::RunOptions::default()
        })?;
        if !config.detach_keys.is_empty() {
            super::attach::parse_detach_keys(&config.detach_keys)?;
        }
        let record = ExecRecord {
            id: random_id()?,
            container_id: c.id.clone(),
            config,
            started: false,
            exit_code: None,
        };
        self.write_exec(&record)?;
        self.emit_container(
            c,
            &format!("exec_create: {}", record.config.cmd.join(" ")),
            &[("execID", record.id.clone())],
        );
        Ok(record)
    }

    /// One exec instance (a unique prefix of its id also finds it).
    pub fn exec_record(&self, id: &str) -> Result<ExecRecord> {
        let path = self.exec_path(id)?;
        if let Ok(r) = read_json(&path) {
            return Ok(r);
        }
        let matches: Vec<PathBuf> = std::fs::read_dir(self.execs_dir())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(id) && n.ends_with(".json"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        match matches.as_slice() {
            [one] => read_json(one),
            _ => Err(EngineError::NoSuchExec(id.to_owned())),
        }
    }

    /// The pid of a running exec (0 when unknown or done).
    pub fn exec_pid(&self, r: &ExecRecord) -> i32 {
        if r.exit_code.is_some() {
            return 0;
        }
        std::fs::read_to_string(self.execs_dir().join(format!("{}.pid", r.id)))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Marks the instance started (an instance starts once: a second start is a conflict).
    pub fn exec_mark_started(&self, id: &str) -> Result<ExecRecord> {
        let mut r = self.exec_record(id)?;
        if r.started {
            return Err(EngineError::Conflict(format!(
                "exec instance {} has already been started",
                r.id
            )));
        }
        let c = self.container(&r.container_id)?;
        if self.state(&c).0 != super::State::Running {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        r.started = true;
        self.write_exec(&r)?;
        self.emit_container(
            &c,
            &format!("exec_start: {}", r.config.cmd.join(" ")),
            &[("execID", r.id.clone())],
        );
        Ok(r)
    }

    /// Runs a started instance in a helper process (`capsa-monitor --exec`) with the given
    /// stdio; with a terminal, the pty master goes to `console_socket` (a listening socket of
    /// the caller's). The helper records the exit code; the caller may wait for the child.
    pub fn exec_spawn(
        &self,
        r: &ExecRecord,
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
        console_socket: Option<&Path>,
    ) -> Result<Child> {
        let bin = super::monitor::monitor_binary()?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--exec")
            .arg(&r.id);
        if let Some(sock) = console_socket {
            cmd.arg("--console-socket").arg(sock);
        }
        cmd.stdin(stdin).stdout(stdout).stderr(stderr);
        cmd.spawn().io("exec", &bin)
    }

    /// Removes the exec records of a container (it is gone).
    pub(crate) fn remove_exec_records(&self, container_id: &str) {
        let Ok(rd) = std::fs::read_dir(self.execs_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Ok(r) = read_json::<ExecRecord>(&path)
                && r.container_id == container_id
            {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(self.execs_dir().join(format!("{}.pid", r.id)));
            }
        }
    }

    /// The exec ids of a container (inspect's `ExecIDs`).
    pub fn exec_ids(&self, container_id: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.execs_dir()) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| read_json::<ExecRecord>(&e.path()).ok())
            .filter(|r| r.container_id == container_id && r.exit_code.is_none())
            .map(|r| r.id)
            .collect()
    }
}

/// The exec helper's body: runs instance `exec_id` and records its exit code.
pub(crate) fn helper_main(root: &Path, state: &Path, exec_id: &str, console: Option<&Path>) -> i32 {
    let run = || -> Result<i32> {
        let engine = Engine::open(root, state)?;
        let mut record = engine.exec_record(exec_id)?;
        let c = engine.container(&record.container_id)?;
        let cfg = &record.config;
        let pid_file = engine.execs_dir().join(format!("{}.pid", record.id));
        let request = ExecRequest {
            args: cfg.cmd.clone(),
            tty: cfg.tty,
            interactive: cfg.attach_stdin,
            env: cfg.env.clone(),
            workdir: Some(cfg.working_dir.clone()).filter(|w| !w.is_empty()),
            user: Some(cfg.user.clone()).filter(|u| !u.is_empty()),
            detach: false,
            console_socket: console.map(Path::to_path_buf),
            pid_file: Some(pid_file.clone()),
        };
        let code = engine.exec(&c, &request);
        let code = match code {
            Ok(code) => code,
            Err(e) => {
                eprintln!("{e}");
                126
            }
        };
        record.exit_code = Some(code);
        let _ = engine.write_exec(&record);
        let _ = std::fs::remove_file(&pid_file);
        engine.emit_container(
            &c,
            "exec_die",
            &[
                ("execID", record.id.clone()),
                ("exitCode", code.to_string()),
            ],
        );
        Ok(code)
    };
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capsa-monitor: exec {exec_id}: {e}");
            126
        }
    }
}

/// Inspect's JSON of an exec instance, Docker's shape.
pub fn exec_inspect_json(engine: &Engine, r: &ExecRecord) -> serde_json::Value {
    let pid = engine.exec_pid(r);
    let running = r.started && r.exit_code.is_none();
    serde_json::json!({
        "ID": r.id,
        "ContainerID": r.container_id,
        "Running": running,
        "ExitCode": r.exit_code,
        "Pid": pid,
        "OpenStdin": r.config.attach_stdin,
        "OpenStdout": r.config.attach_stdout,
        "OpenStderr": r.config.attach_stderr,
        "CanRemove": false,
        "DetachKeys": r.config.detach_keys,
        "ProcessConfig": {
            "tty": r.config.tty,
            "entrypoint": r.config.cmd.first(),
            "arguments": r.config.cmd.get(1..).unwrap_or_default(),
            "privileged": r.config.privileged,
            "user": r.config.user,
        },
    })
}
