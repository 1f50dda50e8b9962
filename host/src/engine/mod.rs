//! The container engine behind the `capsa` CLI: container records under the store root, the
//! OCI spec built from an image config and the run flags, the overlay rootfs, the per-container
//! monitor that outlives the CLI, logs, `diff` and `commit`. The CLI is one client of it.
//!
//! Layout on disk:
//!
//! ```text
//! <root>/                      the image store (capsa-images) ...
//! <root>/containers/<id>/      one container, kept across reboots
//!   container.json             what `create` decided (name, image, command, flags)
//!   exit.json                  the last exit (code, times), written by whoever reaped it
//!   config.json                the OCI spec (this directory is the bundle)
//!   init/ upper/ work/         the init layer, the container's layer, overlay's work dir
//!   rootfs/                    the overlay mount point while the container runs
//!   volumes/<n>/               anonymous volumes for the image's `Volumes`, filled from it
//!   <id>-json.log              the Docker json-file log, written by the monitor
//! <state>/runtime/             the runtime's state root (capsa_host::runtime), on tmpfs
//! ```
//!
//! A container's status is derived, never stored: a runtime record means created, running or
//! paused (as the runtime derives it from the init's pid); without one, an `exit.json` means
//! exited, and neither means created.

pub mod api;
pub mod archive;
pub mod attach;
pub mod build;
pub mod config;
mod container;
mod devices;
pub use devices::DeviceMapping;
mod diff;
mod error;
pub mod events;
mod exec_records;
mod images;
pub use images::{ImageDeleteReport, SaveFormat};
mod lifecycle;
mod logs;
pub mod monitor;
mod named_volumes;
pub mod network;
mod reconcile;
mod seccomp_default;
mod seccomp_profile;
pub mod spec;
mod usage;
mod user;
pub mod userns;
mod volumes;
mod wasm;

pub use container::{ContainerRecord, ExitRecord, MountPoint, State};
pub use diff::{Change, ChangeKind};
pub use error::{EngineError, Result, command_exit_code};
pub use events::{Event, EventFilter, EventReader};
pub use exec_records::{ExecConfig, ExecRecord, exec_inspect_json};
pub use lifecycle::{
    CommitOptions, ExecRequest, StartOutcome, StopOutcome, UpdateOptions, WaitCondition,
};
pub use logs::{LogLine, LogOptions, parse_time};
pub use monitor::{Health, RunState};
pub use named_volumes::{VolumeOptions, VolumeRecord};
pub use reconcile::ReconcileReport;
pub use spec::{
    Healthcheck, MountSpec, Network, Resources, RestartPolicy, RunOptions, Ulimit, create_warnings,
    parse_bytes, parse_duration, resolve_env,
};
pub use usage::Sample;

use std::path::{Path, PathBuf};

use capsa_images::Store;

use crate::runtime::StateRoot;

/// The default store root (`--root`, `CAPSA_ROOT`).
pub const DEFAULT_ROOT: &str = "/var/lib/capsa";
/// The default state dir (`--state`, `CAPSA_STATE`): runtime state that a reboot clears.
pub const DEFAULT_STATE: &str = "/run/capsa";

/// One engine: an image store plus containers. Cheap to open; every CLI command opens one.
pub struct Engine {
    store: Store,
    root: PathBuf,
    /// The state dir (`--state`): the runtime's records, the event log, attach sockets.
    state: PathBuf,
    runtime: StateRoot,
    /// `--userns-remap`: the mapping new containers get (unless `--userns host`).
    userns_remap: Option<userns::IdMap>,
    /// Mirrors and insecure registries, for every pull and push.
    registry: config::RegistrySettings,
    /// `default-ulimits`: what a container gets unless it sets its own.
    default_ulimits: Vec<spec::Ulimit>,
    /// The default bridge's interface and address (`bridge`, `bip`).
    default_bridge: network::DefaultBridge,
    /// The attachment locks this process holds: one per container whose network it set up and
    /// still runs (see `network::attach`), released with the teardown or the process.
    held_networks: std::sync::Mutex<Vec<(String, nix::fcntl::Flock<std::fs::File>)>>,
}

impl Engine {
    /// Opens the store at `root` and the runtime state under `state` (both created if needed).
    /// Applies `--userns-remap default|USER[:GROUP]` (none: container root is host root).
    pub fn with_userns_remap(mut self, spec: Option<&str>) -> Result<Engine> {
        self.userns_remap = match spec.filter(|s| !s.is_empty()) {
            Some(spec) => Some(userns::resolve(spec)?),
            None => None,
        };
        Ok(self)
    }

    /// The mapping new containers get, if the engine remaps.
    pub fn userns_remap(&self) -> Option<userns::IdMap> {
        self.userns_remap
    }

    /// Sets the registry mirrors and insecure registries every pull and push uses.
    pub fn with_registry(mut self, settings: config::RegistrySettings) -> Engine {
        self.registry = settings;
        self
    }

    /// The registry settings (for `info`).
    pub fn registry_settings(&self) -> &config::RegistrySettings {
        &self.registry
    }

    /// Sets the ulimits every new container gets unless it sets its own (`default-ulimits`).
    pub fn with_default_ulimits(mut self, ulimits: Vec<spec::Ulimit>) -> Engine {
        self.default_ulimits = ulimits;
        self
    }

    /// Sets the default bridge's interface and address (`bridge` and `bip` in daemon.json);
    /// they apply when the engine first makes its `bridge` network.
    pub fn with_default_bridge(mut self, bridge: network::DefaultBridge) -> Engine {
        self.default_bridge = bridge;
        self
    }

    /// The options for one pull, push or login: the engine's registry settings, `insecure`
    /// (one more plain-HTTP registry: the CLI's `--insecure`) and the request's `auth`.
    pub fn registry_options(
        &self,
        insecure: Option<&str>,
        auth: Option<capsa_images::registry::Auth>,
    ) -> capsa_images::registry::RegistryOptions {
        let mut options = capsa_images::registry::RegistryOptions {
            insecure: self.registry.insecure.clone(),
            mirrors: self.registry.mirrors.clone(),
            auth,
            ..Default::default()
        };
        options.insecure.extend(insecure.map(str::to_owned));
        options
    }

    pub fn open(root: &Path, state: &Path) -> Result<Engine> {
        let store = Store::open(root)?;
        let root = store.root().to_owned();
        // Compiled wasm modules live with the images (a reboot clears `state`).
        let runtime =
            StateRoot::new(state.join("runtime")).with_wasm_cache(root.join("wasm-cache"));
        Ok(Engine {
            store,
            root,
            state: state.to_owned(),
            runtime,
            userns_remap: None,
            registry: config::RegistrySettings::default(),
            default_ulimits: Vec::new(),
            default_bridge: network::DefaultBridge::default(),
            held_networks: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The image store, for the image verbs.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store root (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state dir (`--state`).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The runtime's state root (containers run through the same library as capsa-runtime).
    pub fn runtime(&self) -> &StateRoot {
        &self.runtime
    }

    /// `<root>/containers`.
    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// `<root>/containers/<id>`.
    fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }
}
