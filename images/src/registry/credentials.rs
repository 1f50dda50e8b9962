//! Stored credentials: `<store root>/auth.json`, mode 0600, in the format of Docker's
//! `config.json` (`{"auths": {"host:port": {"auth": base64("user:password")}}}`), so the same
//! file works for both. When the store has none for a registry, Docker's own file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) is read, never written.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::reference::DOCKER_HUB;
use crate::store::Store;

/// A user name and password (or identity token) for one registry.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic …` value.
    pub(crate) fn basic(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// `<root>/auth.json`.
pub(crate) fn store_file(store: &Store) -> PathBuf {
    store.root().join("auth.json")
}

fn docker_file() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(Path::new(&dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker/config.json"))
}

/// The keys a registry may be filed under (Docker files Docker Hub under its v1 URL).
fn keys(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_owned()];
    if registry == DOCKER_HUB {
        keys.push("https://index.docker.io/v1/".to_owned());
        keys.push("index.docker.io".to_owned());
    }
    keys.push(format!("https://{registry}"));
    keys.push(format!("http://{registry}"));
    keys
}

fn read_file(path: &Path) -> Result<Option<Map<String, Value>>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Credentials {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(Error::Credentials {
            path: path.to_owned(),
            reason: "not a JSON object".to_owned(),
        }),
        Err(e) => Err(Error::Credentials {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn find_in(map: &Map<String, Value>, registry: &str, path: &Path) -> Result<Option<Credentials>> {
    let Some(auths) = map.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    for key in keys(registry) {
        let Some(entry) = auths.get(&key) else {
            continue;
        };
        let bad = |reason: &str| Error::Credentials {
            path: path.to_owned(),
            reason: format!("auths[{key:?}]: {reason}"),
        };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            let decoded = STANDARD
                .decode(auth)
                .map_err(|_| bad("auth is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("auth is not UTF-8"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| bad("auth is not user:password"))?;
            return Ok(Some(Credentials {
                username: user.to_owned(),
                password: pass.to_owned(),
            }));
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            return Ok(Some(Credentials {
                username: u.to_owned(),
                password: p.to_owned(),
            }));
        }
    }
    Ok(None)
}

/// The credentials for `registry`: the store's file first, then Docker's.
pub(crate) fn lookup(store: &Store, registry: &str) -> Result<Option<Credentials>> {
    let own = store_file(store);
    if let Some(map) = read_file(&own)?
        && let Some(c) = find_in(&map, registry, &own)?
    {
        return Ok(Some(c));
    }
    if let Some(path) = docker_file()
        && let Ok(Some(map)) = read_file(&path)
    {
        // Docker's file is a fallback: one we cannot read is skipped, not an error.
        return Ok(find_in(&map, registry, &path).ok().flatten());
    }
    Ok(None)
}

/// Adds (`Some`) or removes (`None`) the store's entry for `registry`, rewriting the file
/// atomically with mode 0600. Returns whether an entry was there before. The caller holds
/// the store's writer lock (the temp file lives in `tmp/`).
pub(crate) fn update(
    store: &Store,
    registry: &str,
    credentials: Option<&Credentials>,
) -> Result<bool> {
    let path = store_file(store);
    let mut map = read_file(&path)?.unwrap_or_default();
    let auths = map
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else {
        return Err(Error::Credentials {
            path,
            reason: "auths is not an object".to_owned(),
        });
    };
    let existed = auths.remove(registry).is_some();
    if let Some(c) = credentials {
        let auth = STANDARD.encode(format!("{}:{}", c.username, c.password));
        auths.insert(registry.to_owned(), serde_json::json!({ "auth": auth }));
    }
    let json = serde_json::to_vec_pretty(&map).map_err(|e| Error::Credentials {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let tmp = store.tmp_path("auth");
    let io_err = |e: std::io::Error| Error::Credentials {
        path: path.clone(),
        reason: e.to_string(),
    };
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(store.root())?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)?;
    Ok(existed)
}
