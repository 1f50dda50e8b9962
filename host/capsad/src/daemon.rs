//! The daemon's shared state: the engine (the store and containers, shared with the `capsa`
//! CLI), the lock that keeps a second daemon off the same data root, attach connections
//! waiting for their container to start, and the daemon's settings.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use anyhow::{Context, Result, bail};
use capsa_host::engine::Engine;
use capsa_host::engine::config::RegistrySettings;
use capsa_host::engine::spec::{Ulimit, check_ulimit};
use capsa_images::registry::Mirror;

use crate::Flags;

/// Everything the handlers share.
pub struct Daemon {
    pub engine: Engine,
    /// Attach connections made before their container started (`docker run` attaches
    /// first): handed to the monitor at start, so no output is missed.
    pub pending_attach: Mutex<HashMap<String, Vec<OwnedFd>>>,
    /// Open `/events` streams (`docker info`'s NEventsListener).
    pub event_listeners: AtomicUsize,
    /// The default cgroup parent (`--cgroup-parent`).
    pub cgroup_parent: Option<String>,
    pub debug: bool,
    /// Exec terminals, by exec id: for `/exec/{id}/resize`.
    pub exec_terminals: Mutex<HashMap<String, std::sync::Arc<OwnedFd>>>,
    /// Held for the daemon's life: one daemon per data root.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Daemon {
    /// Locks the data root (refusing a second daemon) and opens the engine.
    pub fn open(flags: &Flags) -> Result<Daemon> {
        std::fs::create_dir_all(&flags.data_root)
            .with_context(|| format!("create {}", flags.data_root.display()))?;
        let lock_path = flags.data_root.join("capsad.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("open {}", lock_path.display()))?;
        let lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let holder = std::fs::read_to_string(flags.exec_root.join("capsad.pid"))
                    .map(|p| format!(" (pid {})", p.trim()))
                    .unwrap_or_default();
                bail!(
                    "another capsad{holder} is using the data root {}: one daemon per data root",
                    flags.data_root.display()
                );
            }
            Err((_, e)) => bail!("lock {}: {e}", lock_path.display()),
        };
        let mirrors = flags
            .registry_mirrors
            .iter()
            .map(|m| Mirror::parse(m).context("--registry-mirror"))
            .collect::<Result<Vec<_>>>()?;
        let default_ulimits = flags
            .default_ulimits
            .iter()
            .map(|u| {
                let parsed = Ulimit::parse(u)?;
                check_ulimit(&parsed)?;
                Ok(parsed)
            })
            .map(|r: capsa_host::engine::Result<Ulimit>| r.context("--default-ulimit"))
            .collect::<Result<Vec<_>>>()?;
        let engine = Engine::open(&flags.data_root, &flags.exec_root)
            .with_context(|| format!("open the store at {}", flags.data_root.display()))?
            .with_userns_remap(flags.userns_remap.as_deref())?
            .with_registry(RegistrySettings {
                mirrors,
                insecure: flags.insecure_registries.clone(),
            })
            .with_default_ulimits(default_ulimits)
            .with_default_bridge(capsa_host::engine::network::DefaultBridge {
                interface: flags.bridge.clone(),
                bip: flags.bip.clone(),
            });
        let _ = lock.as_fd();
        Ok(Daemon {
            engine,
            pending_attach: Mutex::new(HashMap::new()),
            event_listeners: AtomicUsize::new(0),
            cgroup_parent: flags.cgroup_parent.clone(),
            debug: flags.log_level == "debug",
            exec_terminals: Mutex::new(HashMap::new()),
            _lock: lock,
        })
    }

    /// Takes the attach connections waiting for container `id`.
    pub fn take_pending(&self, id: &str) -> Vec<OwnedFd> {
        self.pending_attach
            .lock()
            .map(|mut m| m.remove(id).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Writes the daemon's pid atomically.
pub fn write_pidfile(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let tmp = path.with_extension("pid.tmp");
    std::fs::write(&tmp, std::process::id().to_string())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
