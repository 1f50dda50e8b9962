//! capsad: capsa's daemon. It serves Docker's Engine API, so the docker CLI, docker-compose and
//! the SDKs drive capsa, locally or remotely. It owns no container: every container has its
//! own monitor process (exec'd, never forked from here), so containers outlive the daemon and a
//! daemon started again finds them running (live restore).
//!
//! The parts: `server` (listeners, TLS, connections), `router` (API versions, routes),
//! `handlers/*` (one per group of endpoints, each a translation to one engine call), `http`
//! (bodies, errors, queries), `daemon` (the shared state: the engine, pending attaches).

mod daemon;
mod handlers;
mod http;
mod logger;
mod router;
mod server;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use capsa_host::engine::config::{ConfigFile, DEFAULT_CONFIG_FILE};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

/// Flags as dockerd's, where dockerd has them.
#[derive(Parser, Debug)]
#[command(
    name = "capsad",
    version,
    about = "capsa's daemon: Docker's Engine API over capsa"
)]
pub struct Flags {
    /// Where to listen: unix:///path, tcp://host:port (repeatable).
    #[arg(short = 'H', long = "host")]
    hosts: Vec<String>,
    /// The image store and containers (the capsa CLI's --root).
    #[arg(long = "data-root", default_value = capsa_host::engine::DEFAULT_ROOT)]
    data_root: PathBuf,
    /// Runtime state, cleared by a reboot (the capsa CLI's --state).
    #[arg(long = "exec-root", default_value = capsa_host::engine::DEFAULT_STATE)]
    exec_root: PathBuf,
    /// Where to write the daemon's pid (default: <exec-root>/capsad.pid).
    #[arg(short = 'p', long)]
    pidfile: Option<PathBuf>,
    /// The group that may use the unix socket (mode 0660).
    #[arg(short = 'G', long)]
    group: Option<String>,
    /// TLS on TCP sockets.
    #[arg(long)]
    tls: bool,
    /// TLS, and require client certificates signed by --tlscacert.
    #[arg(long)]
    tlsverify: bool,
    /// The CA that signs accepted client certificates.
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// The daemon's certificate.
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// The daemon's key.
    #[arg(long)]
    tlskey: Option<PathBuf>,
    /// debug, info, warn, error, fatal.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
    /// The parent cgroup of every container's cgroup, unless a container names its own.
    #[arg(long = "cgroup-parent")]
    cgroup_parent: Option<String>,
    /// A registry reached over plain HTTP (repeatable; loopback registries always are).
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Debug output (as --log-level debug).
    #[arg(short = 'D', long)]
    debug: bool,
    /// Map every new container's root to an unprivileged range: default or USER[:GROUP]
    /// (dockerd's --userns-remap; ranges from /etc/subuid and /etc/subgid).
    #[arg(long = "userns-remap")]
    userns_remap: Option<String>,
    /// A mirror of Docker Hub, http(s)://host[:port], tried before it (repeatable, in order).
    #[arg(long = "registry-mirror")]
    registry_mirrors: Vec<String>,
    /// The default bridge's interface (default capsa0), or none: no default bridge, and
    /// containers without a network get only loopback (dockerd's --bridge).
    #[arg(short = 'b', long = "bridge")]
    bridge: Option<String>,
    /// The default bridge's gateway address and prefix, e.g. 172.17.0.1/16 (dockerd's --bip).
    #[arg(long = "bip")]
    bip: Option<String>,
    /// A ulimit every container gets unless it sets its own: NAME=SOFT[:HARD] (repeatable).
    #[arg(long = "default-ulimit")]
    default_ulimits: Vec<String>,
    /// Keep containers running while the daemon is down: always so with capsa (accepted for
    /// dockerd's command lines).
    #[arg(long = "live-restore")]
    live_restore: bool,
    /// The configuration file, in dockerd's daemon.json shape (its keys where capsa has the
    /// setting). A flag and the same key both set is an error.
    #[arg(long = "config-file", default_value = DEFAULT_CONFIG_FILE)]
    config_file: PathBuf,
}

impl Flags {
    /// Whether `id` (a field's name) was given on the command line.
    fn given(matches: &ArgMatches, id: &str) -> bool {
        matches.value_source(id) == Some(ValueSource::CommandLine)
    }

    /// Reads the configuration file and takes its settings, refusing one also given as a flag.
    /// Returns the file's warnings.
    fn apply_config_file(&mut self, matches: &ArgMatches) -> Result<Vec<String>> {
        let named = Flags::given(matches, "config_file");
        let Some(file) = ConfigFile::load(&self.config_file, named)? else {
            return Ok(Vec::new());
        };
        let shown = |id: &str| -> Option<String> {
            Flags::given(matches, id).then(|| {
                matches
                    .get_raw(id)
                    .map(|v| {
                        v.map(|x| x.to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| "true".to_owned())
            })
        };
        let pairs = [
            ("hosts", "hosts"),
            ("data-root", "data_root"),
            ("exec-root", "exec_root"),
            ("pidfile", "pidfile"),
            ("group", "group"),
            ("tls", "tls"),
            ("tlsverify", "tlsverify"),
            ("tlscacert", "tlscacert"),
            ("tlscert", "tlscert"),
            ("tlskey", "tlskey"),
            ("log-level", "log_level"),
            ("debug", "debug"),
            ("cgroup-parent", "cgroup_parent"),
            ("insecure-registries", "insecure_registries"),
            ("userns-remap", "userns_remap"),
            ("registry-mirrors", "registry_mirrors"),
            ("default-ulimits", "default_ulimits"),
            ("live-restore", "live_restore"),
            ("bridge", "bridge"),
            ("bip", "bip"),
        ];
        let given: Vec<(&str, String)> = pairs
            .iter()
            .filter_map(|(key, id)| shown(id).map(|v| (*key, v)))
            .collect();
        file.refuse_conflicts(&given)?;
        let f = file.clone();
        if let Some(v) = f.hosts {
            self.hosts = v;
        }
        if let Some(v) = f.data_root {
            self.data_root = v;
        }
        if let Some(v) = f.exec_root {
            self.exec_root = v;
        }
        if f.pidfile.is_some() {
            self.pidfile = f.pidfile;
        }
        if f.group.is_some() {
            self.group = f.group;
        }
        self.tls |= f.tls.unwrap_or(false);
        self.tlsverify |= f.tlsverify.unwrap_or(false);
        if f.tlscacert.is_some() {
            self.tlscacert = f.tlscacert;
        }
        if f.tlscert.is_some() {
            self.tlscert = f.tlscert;
        }
        if f.tlskey.is_some() {
            self.tlskey = f.tlskey;
        }
        if let Some(v) = f.log_level {
            self.log_level = v;
        }
        self.debug |= f.debug.unwrap_or(false);
        if f.cgroup_parent.is_some() {
            self.cgroup_parent = f.cgroup_parent;
        }
        if let Some(v) = f.insecure_registries {
            self.insecure_registries = v;
        }
        if f.userns_remap.is_some() {
            self.userns_remap = f.userns_remap;
        }
        if f.bridge.is_some() {
            self.bridge = f.bridge;
        }
        if f.bip.is_some() {
            self.bip = f.bip;
        }
        if let Some(v) = f.registry_mirrors {
            self.registry_mirrors = v;
        }
        if f.default_ulimits.is_some() {
            self.default_ulimits = file
                .default_ulimits()
                .iter()
                .map(|u| format!("{}={}:{}", u.name, u.soft, u.hard))
                .collect();
        }
        Ok(file.warnings())
    }
}

fn main() -> std::process::ExitCode {
    let matches = Flags::command().get_matches();
    let flags = match Flags::from_arg_matches(&matches) {
        Ok(f) => f,
        Err(e) => e.exit(),
    };
    match run(flags, &matches) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capsad: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(mut flags: Flags, matches: &ArgMatches) -> Result<()> {
    let warnings = flags.apply_config_file(matches)?;
    if flags.debug {
        flags.log_level = "debug".into();
    }
    logger::init(&flags.log_level)?;
    for w in warnings {
        log::warn!("{w}");
    }
    if flags.hosts.is_empty() {
        flags.hosts.push("unix:///run/capsa.sock".into());
    }
    if let Some(parent) = &flags.cgroup_parent
        && !parent.starts_with('/')
    {
        bail!("--cgroup-parent {parent:?}: must be an absolute cgroup path");
    }
    let listeners = server::plan(&flags)?;
    let daemon = daemon::Daemon::open(&flags)?;
    let pidfile = flags
        .pidfile
        .clone()
        .unwrap_or_else(|| flags.exec_root.join("capsad.pid"));
    daemon::write_pidfile(&pidfile)?;
    let report = daemon.engine.reconcile();
    log::info!(
        "capsad {} on {}: {} containers running, {} restarted, {} cleaned up",
        capsa_host::engine::api::VERSION,
        flags.data_root.display(),
        report.running,
        report.restarted,
        report.cleaned
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(256)
        .thread_keep_alive(std::time::Duration::from_secs(5))
        .build()
        .context("start the tokio runtime")?;
    let result = runtime.block_on(server::serve(daemon, listeners));
    let _ = std::fs::remove_file(&pidfile);
    result
}
