//! Container verbs: create, start (through the monitor), foreground run, stop, kill, remove,
//! wait, exec, pause, commit. Every runtime step goes through `capsa_host::runtime`, in this
//! (single-threaded) process or in the monitor it forks.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use capsa_images::manifest::LayerKind;
use capsa_images::rootfs::{self, InitFiles, MountMethod};
use capsa_images::{ImageId, ImportOptions, Reference};
use serde_json::{Value, json};

use super::container::{
    ContainerRecord, ExitRecord, MountPoint, State, now_rfc3339, random_id, read_json,
    validate_name, write_atomic,
};
use super::error::{EngineError, IoContext, Result, SysContext, invalid};
use super::spec::{self, Network, RunOptions, SpecInput};
use super::{Engine, monitor, network, user, volumes};
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
    /// With `tty`: where the pty master goes (the daemon holds it), instead of this process's
    /// terminal.
    pub console_socket: Option<PathBuf>,
    /// Where the process's pid is written once it runs.
    pub pid_file: Option<PathBuf>,
}

/// What `start` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The payload runs now.
    Started,
    /// It was running already (Docker answers 304).
    AlreadyRunning,
}

/// What `stop` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// It was running and has stopped.
    Stopped,
    /// It was not running (Docker answers 304).
    NotRunning,
}

/// What `wait` waits for (Docker's `condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitCondition {
    /// Until it is not running (at once when it is not).
    #[default]
    NotRunning,
    /// Until its next exit.
    NextExit,
    /// Until it is removed.
    Removed,
}

impl WaitCondition {
    /// Docker's `condition` query value.
    pub fn parse(text: &str) -> Result<WaitCondition> {
        match text {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(invalid(
                format!("wait condition {other:?}"),
                "use not-running, next-exit or removed",
            )),
        }
    }
}

/// `update`'s changes: resources and the restart policy.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub resources: spec::Resources,
    pub restart: Option<spec::RestartPolicy>,
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

/// Removes a half-made container directory (its mount, the volumes it made) unless disarmed.
struct Rollback<'a> {
    dir: Option<PathBuf>,
    mount: Option<PathBuf>,
    volumes: Vec<String>,
    engine: &'a Engine,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if let Some(m) = &self.mount {
            let _ = unmount(m);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
        for v in &self.volumes {
            let _ = self.engine.volume_remove(v, true);
        }
    }
}

/// Whether `path` is a mount point (its device differs from its parent's).
pub(crate) fn is_mounted(path: &Path) -> bool {
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
    /// `capsa create` / `POST /containers/create`: the container's record, layers, overlay,
    /// volumes and spec. Options are checked first; a failure removes everything this call
    /// made (a volume it created included).
    pub fn create(&self, options: &RunOptions) -> Result<ContainerRecord> {
        let checked = spec::check(options)?;
        let info = self.store.inspect(&options.image)?;
        let raw = image_json(self, &info.id)?;
        let image_config = raw.get("config").cloned().unwrap_or_else(|| json!({}));
        let manifest = image_json(self, &info.manifest_digest)?;
        // Names are unique across front doors: one create (or rename) at a time decides.
        let _names = self.records_lock()?;
        let existing = self.containers()?;
        let id = random_id()?;
        let name = match &options.name {
            Some(n) if !n.is_empty() => {
                let n = n.strip_prefix('/').unwrap_or(n);
                validate_name(n)?;
                if let Some(other) = existing.iter().find(|c| c.name == n) {
                    return Err(EngineError::Conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                        other.id
                    )));
                }
                n.to_owned()
            }
            _ => format!("capsa_{}", &id[..12]),
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
        if wasm && options.init {
            return Err(invalid("--init", "a wasm container runs no init"));
        }
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
        for v in &checked.volumes {
            if !v.name.is_empty()
                && let Ok(vol) = self.volume(&v.name)
            {
                self.volume_dir_for_mount(&vol.name)?;
            }
        }
        let healthcheck = spec::effective_healthcheck(&image_config, options);
        // `container:NAME` modes name an existing container: recorded by id.
        let mut options = options.clone();
        for (kind, target) in [
            ("pid", &mut options.pid_container),
            ("ipc", &mut options.ipc_container),
        ] {
            if let Some(name) = target.as_ref() {
                let other = self.container(name).map_err(|_| {
                    invalid(
                        format!("--{kind} container:{name}"),
                        format!("No such container: {name}"),
                    )
                })?;
                *target = Some(other.id);
            }
        }
        let mut endpoints = Vec::new();
        if options.network == Network::Default {
            options.network = if self.default_bridge_disabled() {
                Network::None
            } else {
                Network::Bridge(network::DEFAULT_BRIDGE.to_owned())
            };
        }
        match &options.network {
            Network::Bridge(name) => {
                endpoints.push(self.endpoint_for_create(
                    name,
                    &options.network_aliases,
                    options.ip.as_deref(),
                    options.mac_address.as_deref(),
                )?);
            }
            Network::Container(name) => {
                if options
                    .port_bindings
                    .as_object()
                    .is_some_and(|m| !m.is_empty())
                    || options.publish_all
                {
                    return Err(invalid(
                        "-p",
                        "conflicting options: port publishing and the container type network mode",
                    ));
                }
                let other = self.container(name).map_err(|_| {
                    invalid(
                        format!("--network container:{name}"),
                        format!("No such container: {name}"),
                    )
                })?;
                options.network = Network::Container(other.id);
            }
            Network::None | Network::Host | Network::Default => {
                if !options.network_aliases.is_empty() || options.ip.is_some() {
                    return Err(invalid(
                        "--network-alias/--ip",
                        "they need a user-defined bridge network",
                    ));
                }
            }
        }
        let options = &options;

        let containers = self.containers_dir();
        std::fs::create_dir_all(&containers).io("mkdir", &containers)?;
        let dir = self.container_dir(&id);
        std::fs::create_dir(&dir).io("mkdir", &dir)?;
        let mut rollback = Rollback {
            dir: Some(dir.clone()),
            mount: None,
            volumes: Vec::new(),
            engine: self,
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
        let id_map = if options.userns_host {
            None
        } else {
            self.userns_remap
        };
        if let Some(map) = id_map {
            // The container's root owns its own layer (what it writes shows as START+n) and
            // may pass through the store's directories to its rootfs.
            for d in [&upper, &work] {
                std::os::unix::fs::chown(d, Some(map.uid), Some(map.gid)).io("chown", d)?;
            }
            for d in [self.root.clone(), containers.clone(), dir.clone()] {
                super::userns::grant_traverse(&d, &map)?;
            }
        }
        let hostname = options
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| id[..12].to_owned());
        let hosts = spec::hosts_file(
            &hostname,
            options.domainname.as_deref(),
            &options.extra_hosts,
            None,
        );
        let host_resolv = String::from_utf8_lossy(&resolv_conf()).into_owned();
        rootfs::write_init_layer(
            &init,
            &InitFiles {
                hosts: hosts.as_bytes(),
                hostname: format!("{hostname}\n").as_bytes(),
                resolv_conf: spec::resolv_conf(&host_resolv, options).as_bytes(),
            },
        )?;
        // Anonymous volumes: the image's `Volumes` and `Config.Volumes` not covered by a mount.
        let mut anonymous_dests: Vec<String> = image_config["Volumes"]
            .as_object()
            .map(|m| m.keys().filter(|k| k.starts_with('/')).cloned().collect())
            .unwrap_or_default();
        let covered = |d: &str| {
            checked.binds.iter().any(|b| b.destination == d)
                || checked.tmpfs.iter().any(|(t, _)| t == d)
                || checked.volumes.iter().any(|v| v.destination == d)
        };
        anonymous_dests.retain(|d| !covered(d.trim_end_matches('/')));
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
        points.extend(checked.volumes.iter().map(|v| v.destination.clone()));
        points.extend(anonymous_dests.iter().cloned());
        for p in points {
            let d = init.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(&d).io("mkdir", &d)?;
        }
        if checked.init.is_some() {
            let sbin = init.join("sbin");
            std::fs::create_dir_all(&sbin).io("mkdir", &sbin)?;
            let point = init.join(spec::INIT_PATH.trim_start_matches('/'));
            std::fs::write(&point, b"").io("create", &point)?;
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
        mount_rootfs(&plan, &rootfs_dir, id_map.as_ref(), &dir)?;
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
        let mut mounts = Vec::new();
        for b in &checked.binds {
            std::fs::create_dir_all(&b.source)
                .or_else(|e| if b.source.exists() { Ok(()) } else { Err(e) })
                .io("mkdir -v source", &b.source)?;
            mounts.push(MountPoint {
                kind: "bind".into(),
                source: b.source.display().to_string(),
                destination: b.destination.clone(),
                mode: if b.read_only { "ro" } else { "" }.into(),
                rw: !b.read_only,
                propagation: "rprivate".into(),
                ..MountPoint::default()
            });
        }
        for (d, _) in &checked.tmpfs {
            mounts.push(MountPoint {
                kind: "tmpfs".into(),
                destination: d.clone(),
                rw: true,
                ..MountPoint::default()
            });
        }
        let mut volume_binds = Vec::new();
        // Image volumes not covered by a mount: directories of the container, filled from the
        // image (they go with it).
        for (n, dest) in anonymous_dests.iter().enumerate() {
            let source = dir.join("volumes").join(n.to_string());
            std::fs::create_dir_all(&source).io("mkdir", &source)?;
            volumes::populate(&rootfs_dir, dest, &source)?;
            if let Some(map) = &id_map {
                super::userns::shift_owners(&source, map)?;
            }
            volume_binds.push((dest.clone(), source, false));
        }
        // Named (and `-v /path` anonymous) volumes: made when missing, filled when new.
        for v in &checked.volumes {
            let (record, made) = self.volume_create_inner(
                &super::named_volumes::VolumeOptions {
                    name: v.name.clone(),
                    ..Default::default()
                },
                v.name.is_empty(),
            )?;
            if made {
                rollback.volumes.push(record.name.clone());
            }
            let data = self.volume_dir_for_mount(&record.name)?;
            if let Some(map) = &id_map {
                for d in [data.parent(), data.parent().and_then(Path::parent)]
                    .into_iter()
                    .flatten()
                {
                    super::userns::grant_traverse(d, map)?;
                }
            }
            let empty = std::fs::read_dir(&data)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if empty && !v.no_copy {
                volumes::populate(&rootfs_dir, &v.destination, &data)?;
            }
            if made && let Some(map) = &id_map {
                super::userns::shift_owners(&data, map)?;
            }
            mounts.push(MountPoint {
                kind: "volume".into(),
                name: record.name.clone(),
                source: data.display().to_string(),
                destination: v.destination.clone(),
                driver: "local".into(),
                mode: if v.read_only { "ro" } else { "z" }.into(),
                rw: !v.read_only,
                propagation: String::new(),
                anonymous: record.anonymous,
            });
            volume_binds.push((v.destination.clone(), data, v.read_only));
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
            hostname: hostname.clone(),
            rootfs: &rootfs_dir,
            checked: &checked,
            id_map,
            volume_binds,
            cgroup: cgroup.clone(),
            annotations,
            options,
            default_ulimits: &self.default_ulimits,
            netns: (!endpoints.is_empty()).then(|| self.netns_path(&id)),
        })?;
        write_atomic(&dir.join("config.json"), &config)?;
        let anonymous_volumes: Vec<String> = mounts
            .iter()
            .filter(|m| m.anonymous)
            .map(|m| m.name.clone())
            .collect();
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
            options: options.clone(),
            id_map,
            mounts,
            healthcheck,
            hostname,
            anonymous_volumes,
            endpoints,
        };
        self.write_record(&record)?;
        rollback.dir = None;
        rollback.mount = None;
        rollback.volumes.clear();
        self.emit_container(&record, "create", &[]);
        Ok(record)
    }

    /// Writes `container.json` atomically.
    pub(crate) fn write_record(&self, record: &ContainerRecord) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|e| invalid("record", e.to_string()))?;
        write_atomic(
            &self.container_dir(&record.id).join("container.json"),
            &bytes,
        )
    }

    /// Mounts the overlay again if it is not mounted (a restart after an exit).
    pub(crate) fn ensure_mounted(&self, c: &ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&c.id);
        let rootfs_dir = dir.join("rootfs");
        if is_mounted(&rootfs_dir) {
            return Ok(());
        }
        let work = dir.join("work");
        // overlayfs wants an empty work dir.
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir(&work).io("mkdir", &work)?;
        if let Some(map) = &c.id_map {
            std::os::unix::fs::chown(&work, Some(map.uid), Some(map.gid)).io("chown", &work)?;
        }
        let plan = rootfs::plan(
            &self.store,
            &c.image_id,
            &dir.join("init"),
            &dir.join("upper"),
            &work,
        )?;
        mount_rootfs(&plan, &rootfs_dir, c.id_map.as_ref(), &dir)?;
        Ok(())
    }

    /// Gets a container ready to start: not running, overlay mounted, no stale runtime state.
    /// The monitor calls it before every start (restarts included).
    pub(crate) fn prepare_start(&self, c: &ContainerRecord) -> Result<()> {
        match self.state(c).0 {
            State::Running | State::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is already running",
                    c.name
                )));
            }
            State::Created | State::Exited | State::Restarting => {}
        }
        if self.runtime_status(c).is_some() {
            runtime::delete(&self.runtime, &c.id, true)?;
        }
        self.ensure_mounted(c)?;
        self.join_namespaces(c)?;
        self.network_up(c)?;
        self.clear_exit(c);
        Ok(())
    }

    /// `--pid/--ipc container:NAME`: points config.json at the other container's namespaces as
    /// they are now (its init may have restarted since create). It must be running, as dockerd
    /// requires.
    fn join_namespaces(&self, c: &ContainerRecord) -> Result<()> {
        let net_container = match &c.options.network {
            Network::Container(id) => Some(id),
            _ => None,
        };
        let joins: Vec<(&str, &String)> = [
            ("pid", c.options.pid_container.as_ref()),
            ("ipc", c.options.ipc_container.as_ref()),
            ("network", net_container),
        ]
        .into_iter()
        .filter_map(|(kind, target)| target.map(|t| (kind, t)))
        .collect();
        if joins.is_empty() {
            return Ok(());
        }
        let path = self.container_dir(&c.id).join("config.json");
        let text = std::fs::read(&path).io("read", &path)?;
        let mut config: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| invalid(path.display().to_string(), e.to_string()))?;
        for (kind, target) in joins {
            let other = self.container(target).map_err(|_| {
                invalid(
                    format!("--{kind} container:{target}"),
                    "the container it joins no longer exists",
                )
            })?;
            let (state, pid) = self.state(&other);
            if state != State::Running || pid <= 0 {
                return Err(EngineError::Conflict(format!(
                    "cannot join {} of a non running container: {}",
                    kind.to_uppercase(),
                    other.name
                )));
            }
            let path = if kind == "network" {
                // Its bound namespace when it has one (it outlives the other's restarts), and
                // its name files, so names resolve the same way in both.
                self.share_network_files(c, &other)?;
                let bound = self.netns_path(&other.id);
                if network::netns::is_bound(&bound) {
                    bound.display().to_string()
                } else {
                    format!("/proc/{pid}/ns/net")
                }
            } else {
                format!("/proc/{pid}/ns/{kind}")
            };
            if let Some(list) = config["linux"]["namespaces"].as_array_mut() {
                list.retain(|n| n["type"] != kind);
                list.push(json!({ "type": kind, "path": path }));
            }
        }
        let bytes = serde_json::to_vec_pretty(&config)
            .map_err(|e| invalid(path.display().to_string(), e.to_string()))?;
        write_atomic(&path, &bytes)
    }

    /// `capsa start` (and `run -d`, `POST /containers/{id}/start`): the monitor (exec'd, see
    /// `monitor`) creates and starts the container and stays with it; this returns once the
    /// payload runs. `attach` are client connections served from the first byte of output.
    pub fn start(&self, c: &ContainerRecord, attach: Vec<OwnedFd>) -> Result<StartOutcome> {
        match self.state(c).0 {
            State::Running | State::Paused | State::Restarting => {
                return Ok(StartOutcome::AlreadyRunning);
            }
            State::Created | State::Exited => {}
        }
        if self.monitor_alive(c) {
            // A monitor between two runs (its policy about to restart): that is running.
            return Ok(StartOutcome::AlreadyRunning);
        }
        self.mark_stopped(c, false);
        let _ = std::fs::remove_file(self.container_dir(&c.id).join("run.json"));
        let started = now_rfc3339();
        let result = monitor::spawn(self, c, attach);
        if let Err(e) = &result {
            self.record_command_failure(c, e, &started);
        }
        if result.is_err() {
            self.network_down(c);
            let _ = unmount(&self.rootfs_dir(c));
            if c.auto_remove && self.remove_files(c).is_ok() {
                self.remove_anonymous_volumes(c);
                self.emit_container(c, "destroy", &[]);
            }
        }
        result.map(|()| StartOutcome::Started)
    }

    /// A start that failed because the command cannot run leaves the container exited with
    /// Docker's code (127 or 126) and the message as `State.Error`, as dockerd records it.
    fn record_command_failure(&self, c: &ContainerRecord, e: &EngineError, started: &str) {
        if let Some(code) = e.command_exit_code() {
            let _ = self.write_exit(
                c,
                &ExitRecord {
                    code,
                    started: started.to_string(),
                    finished: now_rfc3339(),
                    error: Some(e.to_string()),
                },
            );
        }
    }

    /// `capsa run` in the foreground: create and start in this process, forward signals, wait,
    /// record the exit. Returns the payload's exit code. Single-threaded callers only (the CLI):
    /// the runtime forks here.
    pub fn run_foreground(&self, c: &ContainerRecord, interactive: bool) -> Result<i32> {
        if let Err(e) = self.prepare_start(c) {
            // Nothing of a start that did not happen stays: its network, its mount and, with
            // `--rm`, the container (as `start` does for a detached one). A conflict means it
            // runs: that is left alone.
            if matches!(e, EngineError::Conflict(_)) {
                return Err(e);
            }
            self.network_down(c);
            let _ = unmount(&self.rootfs_dir(c));
            if c.auto_remove && self.remove_files(c).is_ok() {
                self.remove_anonymous_volumes(c);
                self.emit_container(c, "destroy", &[]);
            }
            return Err(e);
        }
        if !interactive {
            null_stdin()?;
        }
        let started = now_rfc3339();
        let options = CreateOptions {
            id: c.id.clone(),
            bundle: self.container_dir(&c.id),
            ..CreateOptions::default()
        };
        self.emit_container(c, "start", &[]);
        let result = runtime::run(&self.runtime, &options, false).map_err(EngineError::from);
        if let Err(e) = &result {
            self.record_command_failure(c, e, &started);
        }
        if let Ok(code) = &result {
            self.write_exit(
                c,
                &ExitRecord {
                    code: *code,
                    started,
                    finished: now_rfc3339(),
                    error: None,
                },
            )?;
            self.emit_container(c, "die", &[("exitCode", code.to_string())]);
        }
        self.network_down_in_background(c);
        let _ = unmount(&self.rootfs_dir(c));
        if c.auto_remove {
            self.remove_files(c)?;
            self.remove_anonymous_volumes(c);
            self.emit_container(c, "destroy", &[]);
        }
        result
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
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` to the payload for `stop`; false if there was none to signal because it
    /// exited between `stop` reading its state and the signal (its monitor may already have
    /// deleted the runtime container). A monitor that was restarting it when the stop mark was
    /// written may still start the next run: that one is signalled instead.
    fn signal_payload(&self, c: &ContainerRecord, signal: i32) -> Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let gone = match runtime::kill(&self.runtime, &c.id, signal, false) {
                Ok(()) => return Ok(true),
                Err(
                    e @ (crate::Error::NotFound(_)
                    | crate::Error::WrongStatus { .. }
                    | crate::Error::Sys {
                        errno: nix::errno::Errno::ESRCH,
                        ..
                    }),
                ) => e,
                Err(e) => return Err(e.into()),
            };
            // The monitor ends soon after the exit, as the stop mark forbids a restart; or it
            // was past its last look at the mark and starts one more run, signalled next round.
            if !self.monitor_alive(c) {
                return Ok(false);
            }
            if Instant::now() > deadline {
                return Err(gone.into());
            }
            std::thread::sleep(Duration::from_millis(5));
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

    /// How long `stop` waits by default: `--stop-timeout`, else 10 s.
    pub fn stop_timeout(&self, c: &ContainerRecord) -> Duration {
        Duration::from_secs(c.options.stop_timeout.filter(|t| *t >= 0).unwrap_or(10) as u64)
    }

    /// `capsa stop`: `signal` (default: [`Engine::stop_signal`]) to the payload, SIGKILL to
    /// everything after `timeout` (default: [`Engine::stop_timeout`]). Its restart policy does
    /// not restart it.
    pub fn stop(
        &self,
        c: &ContainerRecord,
        timeout: Option<Duration>,
        signal: Option<i32>,
    ) -> Result<StopOutcome> {
        let signal = match signal {
            Some(s) => s,
            None => self.stop_signal(c)?,
        };
        let timeout = timeout.unwrap_or_else(|| self.stop_timeout(c));
        let state = self.state(c).0;
        if matches!(state, State::Restarting | State::Exited | State::Created) {
            // A monitor in its back-off is told not to start it again.
            if self.monitor_alive(c) {
                self.mark_stopped(c, true);
                let deadline = Instant::now() + Duration::from_secs(5);
                while self.monitor_alive(c) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                self.emit_container(c, "stop", &[]);
                return Ok(StopOutcome::Stopped);
            }
            return Ok(StopOutcome::NotRunning);
        }
        self.mark_stopped(c, true);
        if state == State::Paused {
            runtime::resume(&self.runtime, &c.id)?;
        }
        self.emit_container(c, "kill", &[("signal", signal.to_string())]);
        if self.signal_payload(c, signal)? && !self.wait_gone(c, timeout) {
            self.emit_container(c, "kill", &[("signal", libc::SIGKILL.to_string())]);
            let _ = runtime::kill(&self.runtime, &c.id, libc::SIGKILL, true);
            if !self.wait_gone(c, Duration::from_secs(10)) {
                return Err(EngineError::Conflict(format!(
                    "container {} did not exit after SIGKILL",
                    c.name
                )));
            }
        }
        // The monitor records the exit just after the runtime container goes: wait for it, so
        // that `stop` returning means `inspect` shows the exit.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.monitor_alive(c) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.emit_container(c, "stop", &[]);
        Ok(StopOutcome::Stopped)
    }

    /// `capsa restart`: stop (if running), then start.
    pub fn restart(&self, c: &ContainerRecord, timeout: Option<Duration>) -> Result<()> {
        self.stop(c, timeout, None)?;
        self.start(c, Vec::new())?;
        self.emit_container(c, "restart", &[]);
        Ok(())
    }

    /// `capsa kill`: a signal to the payload (its restart policy then does not restart it, as
    /// Docker's).
    pub fn kill(&self, c: &ContainerRecord, signal: i32) -> Result<()> {
        match self.state(c).0 {
            State::Running | State::Paused => {
                self.mark_stopped(c, true);
                self.emit_container(c, "kill", &[("signal", signal.to_string())]);
                Ok(runtime::kill(&self.runtime, &c.id, signal, false)?)
            }
            s => Err(EngineError::Conflict(format!(
                "Cannot kill container: {}: container {} is not running ({})",
                c.name,
                c.id,
                s.as_str()
            ))),
        }
    }

    /// `capsa pause`.
    pub fn pause(&self, c: &ContainerRecord) -> Result<()> {
        match self.state(c).0 {
            State::Running => {}
            State::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is already paused",
                    c.id
                )));
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "container {} is not running",
                    c.id
                )));
            }
        }
        runtime::pause(&self.runtime, &c.id)?;
        self.emit_container(c, "pause", &[]);
        Ok(())
    }

    /// `capsa unpause`.
    pub fn unpause(&self, c: &ContainerRecord) -> Result<()> {
        if self.state(c).0 != State::Paused {
            return Err(EngineError::Conflict(format!(
                "container {} is not paused",
                c.id
            )));
        }
        runtime::resume(&self.runtime, &c.id)?;
        self.emit_container(c, "unpause", &[]);
        Ok(())
    }

    /// `capsa rm [-f] [-v]`: a running container needs `force` (then it is killed first);
    /// `volumes` also removes its anonymous volumes.
    pub fn remove(&self, c: &ContainerRecord, force: bool, volumes: bool) -> Result<()> {
        match self.state(c).0 {
            State::Running | State::Paused | State::Restarting if !force => {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    c.id
                )));
            }
            State::Running | State::Paused | State::Restarting => {
                self.mark_stopped(c, true);
                let _ = runtime::kill(&self.runtime, &c.id, libc::SIGKILL, true);
                self.wait_gone(c, Duration::from_secs(5));
                let deadline = Instant::now() + Duration::from_secs(5);
                while self.monitor_alive(c) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            State::Created | State::Exited => {}
        }
        if self.runtime_status(c).is_some() {
            runtime::delete(&self.runtime, &c.id, true)?;
        }
        if !self.container_dir(&c.id).exists() {
            // Its monitor removed it meanwhile (`--rm`).
            return Ok(());
        }
        self.remove_files(c)?;
        if volumes {
            self.remove_anonymous_volumes(c);
        }
        self.emit_container(c, "destroy", &[]);
        Ok(())
    }

    /// Removes the volumes made for `c` alone (best effort: one another container took is kept).
    pub(crate) fn remove_anonymous_volumes(&self, c: &ContainerRecord) {
        for v in &c.anonymous_volumes {
            let _ = self.volume_remove(v, true);
        }
    }

    /// Unmounts and deletes the container's directory.
    pub(crate) fn remove_files(&self, c: &ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&c.id);
        self.network_down(c);
        unmount(&dir.join("rootfs"))?;
        self.remove_exec_records(&c.id);
        // Renamed away first: a crash mid-removal leaves no half container listed.
        let doomed = self.containers_dir().join(format!(".removing-{}", c.id));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).io("rename", dir),
        }
        match std::fs::remove_dir_all(&doomed) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).io("remove", doomed),
            _ => Ok(()),
        }
    }

    /// `capsa wait`: blocks until the container exits; returns its exit code.
    pub fn wait(&self, c: &ContainerRecord) -> Result<i32> {
        self.wait_for(c, WaitCondition::NotRunning, &|| false)
    }

    /// Waits for `condition` (Docker's `/wait`), following the event log (no polling);
    /// `cancelled` is asked about twice a second (a client that went away). Returns the exit
    /// code of the exit waited for.
    pub fn wait_for(
        &self,
        c: &ContainerRecord,
        condition: WaitCondition,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<i32> {
        // Events from now on; the state is looked at after the reader exists, so an exit
        // between the two is seen either way.
        let mut events = self.event_reader(None)?;
        let exit_code = || self.exit_record(c).map_or(0, |e| e.code);
        let gone = || !self.container_dir(&c.id).join("container.json").exists();
        let not_running =
            |engine: &Engine| !matches!(engine.state(c).0, State::Running | State::Paused);
        match condition {
            WaitCondition::NotRunning if gone() => {
                return Err(EngineError::NoSuchContainer(c.id.clone()));
            }
            WaitCondition::NotRunning if not_running(self) && !self.monitor_alive(c) => {
                return Ok(exit_code());
            }
            WaitCondition::Removed if gone() => return Ok(0),
            _ => {}
        }
        let mut last = None;
        loop {
            if cancelled() {
                return Err(EngineError::Conflict("wait cancelled".into()));
            }
            match events.next(Some(Duration::from_millis(500)))? {
                Some(e) if e.kind == "container" && e.actor.id == c.id => match e.action.as_str() {
                    "die" => {
                        let code = e
                            .actor
                            .attributes
                            .get("exitCode")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if condition != WaitCondition::Removed {
                            return Ok(code);
                        }
                        last = Some(code);
                    }
                    "destroy" if condition == WaitCondition::Removed => {
                        return Ok(last.unwrap_or(0));
                    }
                    _ => {}
                },
                Some(_) => {}
                None => {
                    // A safety net for an event that was never written (a monitor killed).
                    if condition == WaitCondition::Removed && gone() {
                        return Ok(last.unwrap_or(0));
                    }
                    if condition == WaitCondition::NotRunning
                        && !gone()
                        && not_running(self)
                        && !self.monitor_alive(c)
                    {
                        return Ok(exit_code());
                    }
                    if condition != WaitCondition::Removed && gone() {
                        return Ok(last.unwrap_or(0));
                    }
                }
            }
        }
    }

    /// `capsa exec`: a new process in the running container. Returns its exit code (0 with
    /// `detach`). The runtime forks here: single-threaded callers only (the CLI, the exec
    /// helper the daemon spawns).
    pub fn exec(&self, c: &ContainerRecord, req: &ExecRequest) -> Result<i32> {
        if self.state(c).0 != State::Running {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                c.name
            )));
        }
        let mut env = req.env.clone();
        if req.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            // Docker's: a terminal gets a TERM.
            env.insert(0, "TERM=xterm".to_owned());
        }
        let checked = spec::check(&RunOptions {
            env,
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
                pid_file: req.pid_file.clone(),
                console_socket: req.console_socket.clone(),
                preserve_fds: 0,
            },
        )?)
    }

    /// `capsa rename`: a new unique name.
    pub fn rename(&self, c: &ContainerRecord, new_name: &str) -> Result<()> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        validate_name(new_name)?;
        if new_name == c.name {
            return Err(EngineError::Conflict(
                "Renaming a container with the same name as its current name".to_owned(),
            ));
        }
        let _lock = self.records_lock()?;
        if let Some(other) = self.containers()?.iter().find(|o| o.name == new_name) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        let mut record = self.container(&c.id)?;
        let old = std::mem::replace(&mut record.name, new_name.to_owned());
        self.write_record(&record)?;
        self.emit_container(&record, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    /// `capsa update`: new limits for a container (applied at once when it runs) and a new
    /// restart policy.
    pub fn update(&self, c: &ContainerRecord, update: &UpdateOptions) -> Result<()> {
        let _lock = self.records_lock()?;
        let mut record = self.container(&c.id)?;
        let r = &update.resources;
        let mut options = record.options.clone();
        macro_rules! set {
            ($($f:ident),*) => { $( if r.$f.is_some() { options.resources.$f = r.$f.clone(); } )* };
        }
        set!(
            memory,
            memory_swap,
            memory_reservation,
            cpus,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            blkio_weight
        );
        if let Some(p) = &update.restart {
            options.restart = p.clone();
        }
        spec::check(&options)?;
        // The spec the next start uses.
        let dir = self.container_dir(&c.id);
        let mut config: Value = read_json(&dir.join("config.json"))?;
        let resources = spec::resources_json(&options.resources);
        if let Some(obj) = resources.as_object() {
            for (k, v) in obj {
                config["linux"]["resources"][k] = v.clone();
            }
        }
        let bytes =
            serde_json::to_vec_pretty(&config).map_err(|e| invalid("spec", e.to_string()))?;
        if matches!(self.state(c).0, State::Running | State::Paused) {
            let parsed: oci_spec::runtime::LinuxResources =
                serde_json::from_value(config["linux"]["resources"].clone())
                    .map_err(|e| invalid("resources", e.to_string()))?;
            runtime::update(&self.runtime, &c.id, &parsed)?;
        }
        write_atomic(&dir.join("config.json"), &bytes)?;
        record.options = options;
        self.write_record(&record)?;
        self.emit_container(&record, "update", &[]);
        Ok(())
    }

    /// Serialises changes to container records that must see each other (names).
    fn records_lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        super::container::lock_file(
            &self.root.join("containers.lock"),
            nix::fcntl::FlockArg::LockExclusive,
        )
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
            match &c.id_map {
                None => capsa_images::commit::write_layer(&self.upper_dir(c), &mut file)?,
                Some(map) => capsa_images::commit::write_layer_with_owners(
                    &self.upper_dir(c),
                    &mut file,
                    &|uid, gid| map.container_owner(uid, gid),
                )?,
            }
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
        let clears = e.is_empty() || (e.len() == 1 && e[0].is_empty());
        let entrypoint = if clears { Value::Null } else { json!(e) };
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
    if let Some(t) = options.stop_timeout {
        config.insert("StopTimeout".into(), json!(t));
    }
    if !options.labels.is_empty() {
        let mut labels = config
            .get("Labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in &options.labels {
            labels.insert(k.clone(), json!(v));
        }
        config.insert("Labels".into(), Value::Object(labels));
    }
    if !options.exposed_ports.is_empty() {
        let mut ports = config
            .get("ExposedPorts")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for p in &options.exposed_ports {
            ports.insert(p.clone(), json!({}));
        }
        config.insert("ExposedPorts".into(), Value::Object(ports));
    }
    if let Some(h) = &options.healthcheck {
        config.insert("Healthcheck".into(), json!(h));
    }
    Value::Object(config)
}

/// Points stdin at /dev/null (a payload without `-i` gets no input).
fn null_stdin() -> Result<()> {
    let null = std::fs::File::open("/dev/null").io("open", "/dev/null")?;
    nix::unistd::dup2_stdin(&null).sys(|| "dup2 /dev/null to stdin".to_owned())?;
    let _ = null.as_raw_fd();
    Ok(())
}

/// Mounts a container's overlay: as it is, or with its layers id-mapped (userns-remap).
fn mount_rootfs(
    plan: &rootfs::MountPlan,
    target: &Path,
    id_map: Option<&super::userns::IdMap>,
    container_dir: &Path,
) -> Result<()> {
    use std::os::fd::AsFd;
    match id_map {
        None => {
            rootfs::mount(plan, target, MountMethod::Auto)?;
        }
        Some(map) => {
            let userns = super::userns::namespace_fd(map)?;
            match capsa_images::idmap::mount_idmapped(
                plan,
                target,
                userns.as_fd(),
                &container_dir.join("idmap"),
            ) {
                Ok(_) => {}
                // A filesystem (or kernel) without id-mapped mounts: dockerd's way, copies of
                // the layers owned by the range.
                Err(e) if capsa_images::idmap::unsupported(&e) => {
                    let store_root = container_dir
                        .parent()
                        .and_then(Path::parent)
                        .unwrap_or(container_dir);
                    let shifted = super::userns::shifted_plan(plan, map, store_root)?;
                    rootfs::mount(&shifted, target, MountMethod::Auto)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
