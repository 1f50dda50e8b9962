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
use clap::Parser;

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
}

fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    match run(flags) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capsad: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(mut flags: Flags) -> Result<()> {
    if flags.debug {
        flags.log_level = "debug".into();
    }
    logger::init(&flags.log_level)?;
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
