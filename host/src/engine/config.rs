//! The engine's configuration file, in the shape of Docker's `daemon.json`: the same keys where
//! capsa has the setting, read by `capsad --config-file` and by the `capsa` CLI (the same default
//! path), so that the daemon and the daemonless CLI use one store with one set of registries.
//!
//! As dockerd does: an unknown key is refused with its name, and a setting given both as a flag
//! and in the file is an error naming both values (which one was meant cannot be guessed). The
//! file is optional at its default path and required when named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use capsa_images::registry::Mirror;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::spec::Ulimit;
use super::{EngineError, Result};

/// Where the engine's configuration file is unless `--config-file` names another.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/capsa/daemon.json";

/// dockerd's log levels (`--log-level`, `log-level`).
pub const LOG_LEVELS: [&str; 5] = ["debug", "info", "warn", "error", "fatal"];

/// The file's settings; every key is optional. Field names are the file's keys (kebab-case).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// Docker Hub's mirrors, tried in order before it.
    pub registry_mirrors: Option<Vec<String>>,
    /// Registries reached over plain HTTP.
    pub insecure_registries: Option<Vec<String>>,
    /// The image store and containers (capsa's `--root`).
    pub data_root: Option<PathBuf>,
    /// Runtime state (capsa's `--state`).
    pub exec_root: Option<PathBuf>,
    /// The daemon's listeners.
    pub hosts: Option<Vec<String>>,
    /// The daemon's log level.
    pub log_level: Option<String>,
    /// The daemon's debug output.
    pub debug: Option<bool>,
    /// Limits every container gets unless it sets its own (`{"nofile": {"Name": "nofile",
    /// "Soft": 1024, "Hard": 2048}}`).
    pub default_ulimits: Option<BTreeMap<String, Ulimit>>,
    /// The user-namespace remapping (`default` or `USER[:GROUP]`).
    pub userns_remap: Option<String>,
    /// The default bridge's interface (`capsa0`), or `none` for no default bridge.
    pub bridge: Option<String>,
    /// The default bridge's gateway address and prefix (`172.17.0.1/16`).
    pub bip: Option<String>,
    /// Whether containers outlive the daemon: always so with capsa (see [`ConfigFile::load`]).
    pub live_restore: Option<bool>,
    /// The daemon's default parent cgroup.
    pub cgroup_parent: Option<String>,
    /// The group that may use the daemon's unix socket.
    pub group: Option<String>,
    /// The daemon's pid file.
    pub pidfile: Option<PathBuf>,
    /// TLS on the daemon's TCP sockets.
    pub tls: Option<bool>,
    /// TLS with client certificates.
    pub tlsverify: Option<bool>,
    /// The CA for client certificates.
    pub tlscacert: Option<PathBuf>,
    /// The daemon's certificate.
    pub tlscert: Option<PathBuf>,
    /// The daemon's key.
    pub tlskey: Option<PathBuf>,
    /// The file as read (for the flag conflict check and its message).
    #[serde(skip)]
    raw: Map<String, Value>,
    /// Where it was read from.
    #[serde(skip)]
    path: PathBuf,
}

fn bad(path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        what: format!("configuration file {}", path.display()),
        reason: reason.into(),
    }
}

impl ConfigFile {
    /// Reads and checks the file at `path`. A missing file is no configuration when `named` is
    /// false (the default path), an error when the user named it.
    pub fn load(path: &Path, named: bool) -> Result<Option<ConfigFile>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => return Ok(None),
            Err(e) => {
                return Err(EngineError::Io {
                    what: "read the configuration file",
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(path, format!("not JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(bad(path, "not a JSON object"));
        };
        let mut config: ConfigFile = serde_json::from_value(Value::Object(map.clone()))
            .map_err(|e| bad(path, e.to_string()))?;
        config.raw = map;
        config.path = path.to_owned();
        config.check()?;
        Ok(Some(config))
    }

    fn check(&self) -> Result<()> {
        let path = &self.path;
        let key = |k: &str, e: &dyn std::fmt::Display| bad(path, format!("{k}: {e}"));
        self.mirrors()?;
        if let Some(level) = &self.log_level
            && !LOG_LEVELS.contains(&level.as_str())
        {
            return Err(key(
                "log-level",
                &format!("{level:?} is not one of {}", LOG_LEVELS.join(", ")),
            ));
        }
        for (name, u) in self.default_ulimits.iter().flatten() {
            if *name != u.name {
                return Err(key(
                    "default-ulimits",
                    &format!("the entry {name:?} has Name {:?}", u.name),
                ));
            }
            super::spec::check_ulimit(u).map_err(|e| key("default-ulimits", &e))?;
        }
        for (k, p) in [
            ("data-root", &self.data_root),
            ("exec-root", &self.exec_root),
        ] {
            if let Some(p) = p
                && !p.is_absolute()
            {
                return Err(key(k, &format!("{} is not an absolute path", p.display())));
            }
        }
        Ok(())
    }

    /// What to tell the user of settings that are accepted but change nothing.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.live_restore == Some(false) {
            warnings.push(format!(
                "{}: live-restore false has no effect: capsa's containers always outlive the daemon",
                self.path.display()
            ));
        }
        warnings
    }

    /// Where the file was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file sets `key` (its name in the file).
    pub fn sets(&self, key: &str) -> bool {
        self.raw.contains_key(key)
    }

    /// The mirrors, parsed.
    pub fn mirrors(&self) -> Result<Vec<Mirror>> {
        self.registry_mirrors
            .iter()
            .flatten()
            .map(|m| {
                Mirror::parse(m).map_err(|e| bad(&self.path, format!("registry-mirrors: {e}")))
            })
            .collect()
    }

    /// The default ulimits, in name order.
    pub fn default_ulimits(&self) -> Vec<Ulimit> {
        self.default_ulimits
            .iter()
            .flatten()
            .map(|(_, u)| u.clone())
            .collect()
    }

    /// dockerd's rule: refuses settings given both as a flag and in the file. `flags` lists the
    /// flags that were given, as (the file's key, the flag's value as shown).
    pub fn refuse_conflicts(&self, flags: &[(&str, String)]) -> Result<()> {
        let map = &self.raw;
        let both: Vec<String> = flags
            .iter()
            .filter(|(k, _)| self.sets(k))
            .map(|(k, v)| {
                let file = map.get(*k).map(Value::to_string).unwrap_or_default();
                format!("{k}: (from flag: {v}, from file: {file})")
            })
            .collect();
        if both.is_empty() {
            return Ok(());
        }
        Err(bad(
            &self.path,
            format!(
                "the following directives are specified both as a flag and in the configuration file: {}",
                both.join(", ")
            ),
        ))
    }
}

/// What every pull and push of an engine uses: from the configuration file and the flags.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Docker Hub's mirrors, in order.
    pub mirrors: Vec<Mirror>,
    /// Registries reached over plain HTTP (besides the loopback ones).
    pub insecure: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Option<ConfigFile>> {
        let dir = std::env::temp_dir().join(format!("capsa-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.json", text.len()));
        std::fs::write(&path, text).unwrap();
        let r = ConfigFile::load(&path, true);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn docker_keys_are_read_and_bad_ones_named() {
        let c = load(
            r#"{"registry-mirrors": ["https://m.example"], "insecure-registries": ["r:5000"],
                "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}},
                "live-restore": true, "data-root": "/srv/capsa"}"#,
        )
        .unwrap()
        .unwrap();
        assert!(c.warnings().is_empty());
        assert_eq!(c.mirrors().unwrap()[0].url(), "https://m.example");
        assert_eq!(c.default_ulimits()[0].soft, 1024);
        assert!(c.sets("data-root") && !c.sets("exec-root"));
        let e = c
            .refuse_conflicts(&[("data-root", "/x".into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data-root: (from flag: /x, from file: \"/srv/capsa\")"),
            "{e}"
        );

        for (text, wanted) in [
            ("{not json", "not JSON"),
            ("[]", "not a JSON object"),
            (
                r#"{"storage-driver": "vfs"}"#,
                "unknown field `storage-driver`",
            ),
            (
                r#"{"registry-mirrors": ["ftp://m"]}"#,
                "registry-mirrors: invalid registry mirror",
            ),
            (r#"{"log-level": "loud"}"#, "log-level: \"loud\""),
            (
                r#"{"data-root": "rel"}"#,
                "data-root: rel is not an absolute path",
            ),
            (
                r#"{"default-ulimits": {"nofile": {"Name": "nproc", "Soft": 1, "Hard": 1}}}"#,
                "default-ulimits",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(
                e.contains("configuration file") && e.contains(wanted),
                "{text}: {e}"
            );
        }
        let c = load(r#"{"live-restore": false}"#).unwrap().unwrap();
        assert_eq!(c.warnings().len(), 1);
        assert!(
            ConfigFile::load(Path::new("/nonexistent/capsa.json"), false)
                .unwrap()
                .is_none()
        );
        assert!(ConfigFile::load(Path::new("/nonexistent/capsa.json"), true).is_err());
    }
}
