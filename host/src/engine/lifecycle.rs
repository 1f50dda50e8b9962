//! Container verbs: create, start (through the monitor), foreground run, stop, kill, remove,
//! wait, exec, pause, commit. Every runtime step goes through `capsa_host::runtime`, in this
//! (single-threaded) process or in the monitor it forks.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use capsa_images::manifest::LayerKind;
use capsa_images::rootfs::{self, InitFiles, MountMethod};
use capsa_images::{ImageId, ImportOptions, Reference};
use serde_json::{Value, json};

use super::container::{
    ContainerRecord, ExitRecord, State, now_rfc3339, random_id, read_json, validate_name,
    write_atomic,
};
use super::error::{EngineError, IoContext, Result, SysContext, invalid};
use super::spec::{self, RunOptions, SpecInput};
use super::{Engine, monitor, user, volumes};
use crate::runtime::{self, CreateOptions, ExecOptions, ProcessFlags, ProcessSource, UserSpec};

/// The annotation that makes the runtime run args[0] through capsa-shim.
const WASM_VARIANT: &str = "module.wasm.image/variant";
use super::wasm::WASM_MODULE_PATH;
/// The default cgroup parent.
const CGROUP_PARENT: &str = "/capsa";

/// `capsa exec` flags.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command.
    pub args: Vec<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`: keep stdin.
    pub interactive: bool,
    /// `-e`.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-d`.
    pub detach: bool,
}

/// `capsa commit` flags.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `REPOSITORY[:TAG]`.
    pub reference: Option<String>,
    /// `-m`.
    pub comment: Option<String>,
    /// `-a`.
    pub author: Option<String>,
    /// `-c`: Dockerfile instructions applied to the new image's config.
    pub changes: Vec<String>,
    /// `-p` (Docker's default: true): freeze a running container while its layer is read.
    pub pause: bool,
}

/// Removes a half-made container directory (and its mount) unless disarmed.
struct Rollback {
    dir: Option<PathBuf>,
    mount: Option<PathBuf>,
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if let Some(m) = &self.mount {
            let _ = unmount(m);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Whether `path` is a mount point (its device differs from its parent's).
fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(m), Some(Ok(p))) => m.dev() != p.dev(),
        _ => false,
    }
}

/// Detaches the overlay at `path` if one is mounted there.
pub(crate) fn unmount(path: &Path) -> Result<()> {
    if is_mounted(path) {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
            .sys(|| format!("umount {}", path.display()))?;
    }
    Ok(())
}

/// The host's resolv.conf, for the init layer.
fn resolv_conf() -> Vec<u8> {
    std::fs::read("/etc/resolv.conf").unwrap_or_default()
}

/// Reads a file of the image config, mapped to the engine error.
fn image_json(engine: &Engine, digest: &capsa_images::Digest) -> Result<Value> {
    let bytes = engine.store.read_blob(digest)?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("blob {digest}"), e.to_string()))
}

impl Engine {
    /// `capsa create`: the container's record, layers, overlay and spec. Flags are checked first;
    /// a failure removes everything this call made.
    pub fn create(&self, options: &RunOptions) -> Result<ContainerRecord> {
        let checked = spec::check(options)?;
        let info = self.store.inspect(&options.image)?;
        let raw = image_json(self, &info.id)?;
        let image_config = raw.get("config").cloned().unwrap_or_else(|| json!({}));
        let manifest = image_json(self, &info.manifest_digest)?;
        let existing = self.containers()?;
        let id = random_id()?;
        let name = match &options.name {
            Some(n) => {
                validate_name(n)?;
                if existing.iter().any(|c| &c.name == n) {
                    return Err(EngineError::Conflict(format!(
                        "the container name {n:?} is already in use"
                    )));
                }
                n.clone()
            }
            None => format!("capsa_{}", &id[..12]),
        };

        // Wasm: a raw module layer, a wasi/wasm platform, or the variant annotation.
        let wasm_layer = info.layers.iter().find(|l| l.kind == LayerKind::Wasm);
        let (os, arch) = info.platform();
        let mut annotations = Vec::new();
        for key in [WASM_VARIANT, "run.oci.handler"] {
            let value = manifest["annotations"][key]
                .as_str()
                .or_else(|| image_config["Labels"][key].as_str());
            if let Some(v) = value {
                annotations.push((key.to_owned(), v.to_owned()));
            }
        }
        let wasm_platform = arch == "wasm" || os.starts_with("wasi");
        if (wasm_layer.is_some() || wasm_platform) && annotations.is_empty() {
            annotations.push((WASM_VARIANT.to_owned(), "compat".to_owned()));
        }
        let wasm = !annotations.is_empty();
        let mut args = spec::command_line(&image_config, options);
        if wasm_layer.is_some() {
            args.retain(|a| a != WASM_MODULE_PATH);
            args.insert(0, WASM_MODULE_PATH.to_owned());
        }
        if args.is_empty() {
            return Err(invalid(
                "command",
                "none given and the image has no Entrypoint or Cmd",
            ));
        }
        let cwd = options
            .workdir
            .clone()
            .or_else(|| image_config["WorkingDir"].as_str().map(String::from))
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        if !cwd.starts_with('/') {
            return Err(invalid(format!("working dir {cwd:?}"), "must be absolute"));
        }

        let containers = self.containers_dir();
        std::fs::create_dir_all(&containers).io("mkdir", &containers)?;
        let dir = self.container_dir(&id);
        std::fs::create_dir(&dir).io("mkdir", &dir)?;
        let mut rollback = Rollback {
            dir: Some(dir.clone()),
            mount: None,
        };
        let (init, upper, work, rootfs_dir) = (
            dir.join("init"),
            dir.join("upper"),
            dir.join("work"),
            dir.join("rootfs"),
        );
        for d in [&upper, &work, &rootfs_dir] {
            std::fs::create_dir(d).io("mkdir", d)?;
        }
        let hostname = options
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_owned());
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        );
        rootfs::write_init_layer(
            &init,
            &InitFiles {
                hosts: hosts.as_bytes(),
                hostname: format!("{hostname}\n").as_bytes(),
                resolv_conf: &resolv_conf(),
            },
        )?;
        // Mount points live in the init layer, as in Docker's, so they are not the container's
        // changes (`diff`, `commit`).
        let mut points = vec!["/proc".to_owned(), "/sys".to_owned(), "/dev".to_owned()];
        points.extend(checked.tmpfs.iter().map(|(d, _)| d.clone()));
        points.extend(
            checked
                .binds
                .iter()
                .filter(|b| !b.source.is_file())
                .map(|b| b.destination.clone()),
        );
        if let Some(vols) = image_config["Volumes"].as_object() {
            points.extend(vols.keys().filter(|k| k.starts_with('/')).cloned());
        }
        for p in points {
            let d = init.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(&d).io("mkdir", &d)?;
        }
        if let Some(layer) = wasm_layer {
            // A hard link: the module is not copied (the store and the container share a
            // filesystem), and as a lower file it is copied up before any write.
            let dest = init.join(WASM_MODULE_PATH.trim_start_matches('/'));
            if std::fs::hard_link(&layer.path, &dest).is_err() {
                std::fs::copy(&layer.path, &dest).io("copy", &layer.path)?;
            }
        }
        let plan = rootfs::plan(&self.store, &info.id.to_string(), &init, &upper, &work)?;
        rootfs::mount(&plan, &rootfs_dir, MountMethod::Auto)?;
        rollback.mount = Some(rootfs_dir.clone());

        let user_spec = options
            .user
            .clone()
            .or_else(|| image_config["User"].as_str().map(String::from))
            .unwrap_or_default();
        let identity = user::resolve(&rootfs_dir, &user_spec)?;
        let mut env = spec::strings(&image_config["Env"]);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            );
        }
        let container_config = container_config(&image_config, options, &env, &checked.env);
        spec::merge_env(&mut env, &[format!("HOSTNAME={hostname}")]);
        if options.tty {
            spec::merge_env(&mut env, &["TERM=xterm".to_owned()]);
        }
        spec::merge_env(&mut env, &checked.env);
        for b in &checked.binds {
            std::fs::create_dir_all(&b.source).io("mkdir -v source", &b.source)?;
        }
        let mut anonymous = Vec::new();
        if let Some(vols) = image_config["Volumes"].as_object() {
            for (n, dest) in vols.keys().enumerate() {
                let covered = checked.binds.iter().any(|b| &b.destination == dest)
                    || checked.tmpfs.iter().any(|(d, _)| d == dest);
                if !covered && dest.starts_with('/') {
                    let source = dir.join("volumes").join(n.to_string());
                    std::fs::create_dir_all(&source).io("mkdir", &source)?;
                    volumes::populate(&rootfs_dir, dest, &source)?;
                    anonymous.push((dest.clone(), source));
                }
            }
        }
        let cgroup = format!(
            "{}/{id}",
            options
                .cgroup_parent
                .as_deref()
                .unwrap_or(CGROUP_PARENT)
                .trim_end_matches('/')
        );
        let config = spec::build(&SpecInput {
            args: args.clone(),
            env,
            cwd,
            user: identity,
            hostname,
            rootfs: &rootfs_dir,
            checked: &checked,
            anonymous,
            cgroup: cgroup.clone(),
            annotations,
            options,
        })?;
        write_atomic(&dir.join("config.json"), &config)?;
        let record = ContainerRecord {
            id: id.clone(),
            name,
            image: options.image.clone(),
            image_id: info.id.to_string(),
            created: now_rfc3339(),
            args,
            tty: options.tty,
            auto_remove: options.auto_remove,
            cgroup,
            wasm,
            config: container_config,
        };
        let bytes =
            serde_json::to_vec_pretty(&record).map_err(|e| invalid("record", e.to_string()))?;
        write_atomic(&dir.join("container.json"), &bytes)?;
        rollback.dir = None;
        rollback.mount = None;
        Ok(record)
    }

    /// Mounts the overlay again if it is not mounted (a restart after an exit).
    fn ensure_mounted(&self, c: &ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&c.id);
        let rootfs_dir = dir.join("rootfs");
        if is_mounted(&rootfs_dir) {
            return Ok(());
        }
        let work = dir.join("work");
        // overlayfs wants an empty work dir.
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir(&work).io("mkdir", &work)?;
        let plan = rootfs::plan(
            &self.store,
            &c.image_id,
            &dir.join("init"),
            &dir.join("upper"),
            &work,
        )?;
        rootfs::mount(&plan, &rootfs_dir, MountMethod::Auto)?;
        Ok(())
    }

    /// Gets a container ready to start: not running, overlay mounted, no stale runtime state.
    fn prepare_start(&self, c: &ContainerRecord) -> Result<()> {
        match self.state(c).0 {
            State::Running | State::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is already running",
                    c.name
                )));
            }
            State::Created | State::Exited => {}
        }
        if self.runtime_status(c).is_some() {
            runtime::delete(&self.runtime, &c.id, true)?;
        }
        self.ensure_mounted(c)?;
        self.clear_exit(c);
        Ok(())
    }

    /// `capsa start` (and `run -d`): the monitor creates and starts the container and stays
    /// with it; this returns once the payload runs.
    pub fn start(&self, c: &ContainerRecord) -> Result<()> {
        self.prepare_start(c)?;
        let result = monitor::spawn(self, c);
        if result.is_err() {
            let _ = unmount(&self.rootfs_dir(c));
            if c.auto_remove {
                let _ = self.remove_files(c);
            }
        }
        result
    }

    /// `capsa run` in the foreground: create and start in this process, forward signals, wait,
    /// record the exit. Returns the payload's exit code.
    pub fn run_foreground(&self, c: &ContainerRecord, interactive: bool) -> Result<i32> {
        self.prepare_start(c)?;
        if !interactive {
            null_stdin()?;
        }
        let started = now_rfc3339();
        let options = CreateOptions {
            id: c.id.clone(),
            bundle: self.container_dir(&c.id),
            ..CreateOptions::default()
        };
        let result = runtime::run(&self.runtime, &options, false);
        if let Ok(code) = &result {
            self.write_exit(
                c,
                &ExitRecord {
                    code: *code,
                    started,
                    finished: now_rfc3339(),
                },
            )?;
        }
        let _ = unmount(&self.rootfs_dir(c));
        if c.auto_remove {
            self.remove_files(c)?;
        }
        Ok(result?)
    }

    /// Polls until the container has no runtime container left (its monitor reaped it).
    fn wait_gone(&self, c: &ContainerRecord, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.state(c).0 {
                State::Running | State::Paused => {}
                _ if self.runtime_status(c).is_none() => return true,
                _ => {}
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The signal `stop` sends first: `--stop-signal`, else the image's StopSignal (both kept
    /// in the container's config), else SIGTERM.
    pub fn stop_signal(&self, c: &ContainerRecord) -> Result<i32> {
        match c.config["StopSignal"].as_str().filter(|s| !s.is_empty()) {
            Some(s) => Ok(runtime::parse_signal(s)
                .map_err(|e| invalid(format!("StopSignal {s:?} of {}", c.name), e.to_string()))?),
            None => Ok(libc::SIGTERM),
        }
    }

    /// `capsa stop`: `signal` (default: [`Engine::stop_signal`]) to the payload, SIGKILL to
    /// everything after `timeout`.
    pub fn stop(&self, c: &ContainerRecord, timeout: Duration, signal: Option<i32>) -> Result<()> {
        let signal = match signal {
            Some(s) => s,
            None => self.stop_signal(c)?,
        };
        match self.state(c).0 {
            State::Running => {}
            State::Paused => runtime::resume(&self.runtime, &c.id)?,
            State::Created | State::Exited => return Ok(()),
        }
        runtime::kill(&self.runtime, &c.id, signal, false)?;
        if self.wait_gone(c, timeout) {
            return Ok(());
        }
        let _ = runtime::kill(&self.runtime, &c.id, libc::SIGKILL, true);
        if !self.wait_gone(c, Duration::from_secs(10)) {
            return Err(EngineError::Conflict(format!(
                "container {} did not exit after SIGKILL",
                c.name
            )));
        }
        Ok(())
    }

    /// `capsa kill`: a signal to the payload.
    pub fn kill(&self, c: &ContainerRecord, signal: i32) -> Result<()> {
        match self.state(c).0 {
            State::Running | State::Paused => {
                Ok(runtime::kill(&self.runtime, &c.id, signal, false)?)
            }
            s => Err(EngineError::Conflict(format!(
                "container {} is {}, not running",
                c.name,
                s.as_str()
            ))),
        }
    }

    /// `capsa pause`.
    pub fn pause(&self, c: &ContainerRecord) -> Result<()> {
        Ok(runtime::pause(&self.runtime, &c.id)?)
    }

    /// `capsa unpause`.
    pub fn unpause(&self, c: &ContainerRecord) -> Result<()> {
        Ok(runtime::resume(&self.runtime, &c.id)?)
    }

    /// `capsa rm [-f]`: a running container needs `force` (then it is killed first).
    pub fn remove(&self, c: &ContainerRecord, force: bool) -> Result<()> {
        match self.state(c).0 {
            State::Running | State::Paused if !force => {
                return Err(EngineError::Conflict(format!(
                    "container {} is running: stop it first or use rm -f",
                    c.name
                )));
            }
            State::Running | State::Paused => {
                let _ = runtime::kill(&self.runtime, &c.id, libc::SIGKILL, true);
                self.wait_gone(c, Duration::from_secs(5));
            }
            State::Created | State::Exited => {}
        }
        if self.runtime_status(c).is_some() {
            runtime::delete(&self.runtime, &c.id, true)?;
        }
        self.remove_files(c)
    }

    /// Unmounts and deletes the container's directory.
    pub(crate) fn remove_files(&self, c: &ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&c.id);
        unmount(&dir.join("rootfs"))?;
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).io("remove", dir),
            _ => Ok(()),
        }
    }

    /// `capsa wait`: blocks until the container exits; returns its exit code.
    pub fn wait(&self, c: &ContainerRecord) -> Result<i32> {
        loop {
            let (state, _) = self.state(c);
            if state == State::Exited
                && let Some(exit) = self.exit_record(c)
            {
                return Ok(exit.code);
            }
            if !self.container_dir(&c.id).exists() {
                return Err(EngineError::NoSuchContainer(c.name.clone()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `capsa exec`: a new process in the running container. Returns its exit code (0 with
    /// `detach`).
    pub fn exec(&self, c: &ContainerRecord, req: &ExecRequest) -> Result<i32> {
        if self.state(c).0 != State::Running {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                c.name
            )));
        }
        let checked = spec::check(&RunOptions {
            env: req.env.clone(),
            ..RunOptions::default()
        })?;
        let user = match &req.user {
            Some(u) => {
                let id = user::resolve(&self.rootfs_dir(c), u)?;
                Some((id.uid, id.gid, id.additional_gids))
            }
            None => None,
        };
        if !req.interactive {
            null_stdin()?;
        }
        let flags = ProcessFlags {
            args: req.args.clone(),
            tty: req.tty,
            env: checked.env,
            cwd: req.workdir.as_ref().map(PathBuf::from),
            user: user.as_ref().map(|(uid, gid, _)| UserSpec {
                uid: *uid,
                gid: Some(*gid),
            }),
            additional_gids: user.map(|(_, _, g)| g).unwrap_or_default(),
            ..ProcessFlags::default()
        };
        Ok(runtime::exec(
            &self.runtime,
            &ExecOptions {
                id: c.id.clone(),
                process: ProcessSource::Flags(flags),
                detach: req.detach,
                pid_file: None,
                console_socket: None,
                preserve_fds: 0,
            },
        )?)
    }

    /// `capsa commit`: the container's layer (without the init layer's files; deletions as
    /// OCI whiteouts) becomes a new layer on its image. A running container is paused while its
    /// layer is read.
    pub fn commit(&self, c: &ContainerRecord, options: &CommitOptions) -> Result<ImageId> {
        let reference = match &options.reference {
            Some(r) => Some(Reference::parse(r)?),
            None => None,
        };
        // Bad changes are refused before the container is touched.
        capsa_images::change::apply(&mut json!({}), &options.changes)?;
        let paused = options.pause && self.state(c).0 == State::Running;
        if paused {
            self.pause(c)?;
        }
        let tar_path = self.container_dir(&c.id).join("commit.tar");
        let written = (|| -> Result<()> {
            let mut file = std::fs::File::create(&tar_path).io("create", &tar_path)?;
            capsa_images::commit::write_layer(&self.upper_dir(c), &mut file)?;
            Ok(())
        })();
        if paused {
            let _ = self.unpause(c);
        }
        let result = written.and_then(|()| {
            let mut file = std::fs::File::open(&tar_path).io("open", &tar_path)?;
            Ok(self.store.import_tar(
                &mut file,
                &ImportOptions {
                    reference,
                    base: Some(c.image_id.clone()),
                    container_config: Some(c.config.clone()).filter(|v| v.is_object()),
                    created_by: Some(format!("capsa commit {}", c.name)),
                    comment: options.comment.clone(),
                    author: options.author.clone(),
                    changes: options.changes.clone(),
                },
            )?)
        });
        let _ = std::fs::remove_file(&tar_path);
        result
    }

    /// Whether any container uses image `id` (such an image is not removed).
    pub fn image_in_use(&self, id: &ImageId) -> Result<Option<String>> {
        let id = id.to_string();
        Ok(self
            .containers()?
            .into_iter()
            .find(|c| c.image_id == id)
            .map(|c| c.name))
    }

    /// The container's `container.json` and `config.json` for `inspect`.
    pub fn inspect_json(&self, c: &ContainerRecord) -> Result<Value> {
        let (state, pid) = self.state(c);
        let exit = self.exit_record(c).unwrap_or_default();
        let dir = self.container_dir(&c.id);
        let spec: Value = read_json(&dir.join("config.json"))?;
        let layers: Vec<String> = self
            .store
            .layer_dirs(&c.image_id)
            .unwrap_or_default()
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        Ok(json!({
            "Id": c.id,
            "Name": format!("/{}", c.name),
            "Created": c.created,
            "Path": c.args.first(),
            "Args": c.args.get(1..).unwrap_or_default(),
            "State": {
                "Status": state.as_str(),
                "Running": state == State::Running,
                "Paused": state == State::Paused,
                "Pid": pid,
                "ExitCode": exit.code,
                "StartedAt": exit.started,
                "FinishedAt": exit.finished,
            },
            "Image": c.image_id,
            "ImageName": c.image,
            "LogPath": self.log_path(c),
            "HostConfig": { "AutoRemove": c.auto_remove, "CgroupParent": c.cgroup },
            "GraphDriver": {
                "Name": "overlay",
                "Data": {
                    "LowerDir": std::iter::once(dir.join("init").display().to_string()).chain(layers).collect::<Vec<_>>().join(":"),
                    "UpperDir": dir.join("upper"),
                    "WorkDir": dir.join("work"),
                    "MergedDir": dir.join("rootfs"),
                }
            },
            "Config": inspect_config(c, &spec),
            "Wasm": c.wasm,
            "Spec": spec,
        }))
    }
}

/// The container's config in image-config terms: the image's with the flags of `options`
/// applied (Docker's `Config` of a container, which `commit` records). `env` is the image's
/// environment with the default PATH; `flag_env` the `-e`/`--env-file` entries.
fn container_config(
    image_config: &Value,
    options: &RunOptions,
    env: &[String],
    flag_env: &[String],
) -> Value {
    let mut config = match image_config {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let mut env = env.to_vec();
    spec::merge_env(&mut env, flag_env);
    config.insert("Env".into(), json!(env));
    if let Some(e) = &options.entrypoint {
        let entrypoint = if e.is_empty() {
            Value::Null
        } else {
            json!([e])
        };
        config.insert("Entrypoint".into(), entrypoint);
        config.insert("Cmd".into(), Value::Null);
    }
    if !options.command.is_empty() {
        config.insert("Cmd".into(), json!(options.command));
    }
    if let Some(w) = &options.workdir {
        config.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &options.user {
        config.insert("User".into(), json!(u));
    }
    if let Some(s) = &options.stop_signal {
        config.insert("StopSignal".into(), json!(s));
    }
    Value::Object(config)
}

/// `inspect`'s `Config`, as Docker shows a container's: its config in image terms (Entrypoint
/// and Cmd apart, Labels, Volumes, ...) plus what only the container has (Hostname, Tty, Image,
/// the whole environment it runs with).
fn inspect_config(c: &ContainerRecord, spec: &Value) -> Value {
    let mut config = match &c.config {
        Value::Object(m) => m.clone(),
        // A record from before the config was kept: the command line as Cmd.
        _ => serde_json::Map::from_iter([("Cmd".to_owned(), json!(spec["process"]["args"]))]),
    };
    config.insert("Hostname".into(), spec["hostname"].clone());
    config.insert("Env".into(), spec["process"]["env"].clone());
    config.insert("WorkingDir".into(), spec["process"]["cwd"].clone());
    config.insert("Tty".into(), json!(c.tty));
    config.insert("Image".into(), json!(c.image));
    Value::Object(config)
}

/// Points stdin at /dev/null (a payload without `-i` gets no input).
fn null_stdin() -> Result<()> {
    let null = std::fs::File::open("/dev/null").io("open", "/dev/null")?;
    nix::unistd::dup2_stdin(&null).sys(|| "dup2 /dev/null to stdin".to_owned())?;
    let _ = null.as_raw_fd();
    Ok(())
}
