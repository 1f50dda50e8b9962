//! Stored credentials: `<store root>/auth.json`, mode 0600, in the format of Docker's
//! `config.json` (`{"auths": {"host:port": {"auth": base64("user:password")}}}`), so the same
//! file works for both. When the store has none for a registry, Docker's own file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) is read, never written.
//!
//! Either file may name credential helpers as Docker's does: `credHelpers` (per registry) and
//! `credsStore` (for every registry). A registry with a helper gets its secrets from the helper
//! (the file's own entry is the fallback when the helper has none), and `login`/`logout` store
//! and erase through it: the secret is then in no file at all. The store's file is asked first.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::error::{Error, Result};
use super::helper::Helper;
use super::reference::DOCKER_HUB;
use crate::store::Store;

/// A user name and password, or an identity token (an OAuth2 refresh token a token server gave
/// at login, used instead of the password from then on), for one registry.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) identity_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.username)
    }
}

impl Credentials {
    /// A user name and password.
    pub(crate) fn password(username: String, password: String) -> Credentials {
        Credentials {
            username,
            password,
            identity_token: None,
        }
    }

    /// An identity token, with no password.
    pub(crate) fn identity_token(token: String) -> Credentials {
        Credentials {
            username: String::new(),
            password: String::new(),
            identity_token: Some(token),
        }
    }

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

/// The server name a credential helper files `registry` under: Docker Hub's v1 URL for Docker
/// Hub (what the docker CLI uses, so both find the same entry), else `host[:port]`.
fn helper_server(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// The helper a config file names for `registry`: its `credHelpers` entry, else `credsStore`.
fn helper_in(map: &Map<String, Value>, registry: &str) -> Option<Helper> {
    let named = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(|n| Helper { name: n.to_owned() })
    };
    if let Some(helpers) = map.get("credHelpers").and_then(Value::as_object) {
        for key in keys(registry) {
            if let Some(h) = named(helpers.get(&key)) {
                return Some(h);
            }
        }
    }
    named(map.get("credsStore"))
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
        if let Some(token) = entry.get("identitytoken").and_then(Value::as_str)
            && !token.is_empty()
        {
            return Ok(Some(Credentials::identity_token(token.to_owned())));
        }
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            let decoded = STANDARD
                .decode(auth)
                .map_err(|_| bad("auth is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("auth is not UTF-8"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| bad("auth is not user:password"))?;
            return Ok(Some(Credentials::password(
                user.to_owned(),
                pass.to_owned(),
            )));
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            return Ok(Some(Credentials::password(u.to_owned(), p.to_owned())));
        }
    }
    Ok(None)
}

/// The credentials for `registry` in one config file: its helper's, else its own entry.
fn lookup_in(map: &Map<String, Value>, registry: &str, path: &Path) -> Result<Option<Credentials>> {
    if let Some(helper) = helper_in(map, registry)
        && let Some(c) = helper.get(&helper_server(registry))?
    {
        return Ok(Some(c));
    }
    find_in(map, registry, path)
}

/// Docker's config file, parsed; one that cannot be read or parsed is skipped (it is a
/// fallback, and may be another tool's to fix).
fn docker_map() -> Option<(PathBuf, Map<String, Value>)> {
    let path = docker_file()?;
    let map = read_file(&path).ok().flatten()?;
    Some((path, map))
}

/// The credentials for `registry`: the store's file first, then Docker's.
pub(crate) fn lookup(store: &Store, registry: &str) -> Result<Option<Credentials>> {
    let own = store_file(store);
    if let Some(map) = read_file(&own)?
        && let Some(c) = lookup_in(&map, registry, &own)?
    {
        return Ok(Some(c));
    }
    match docker_map() {
        Some((path, map)) => match lookup_in(&map, registry, &path) {
            Ok(c) => Ok(c),
            // A helper's failure is shown (with its name); a bad entry of Docker's is skipped.
            Err(e @ Error::CredentialHelper { .. }) => Err(e),
            Err(_) => Ok(None),
        },
        None => Ok(None),
    }
}

/// The helper that keeps `registry`'s credentials, if either file names one (the store's first).
fn helper_for(store: &Store, registry: &str) -> Result<Option<Helper>> {
    if let Some(map) = read_file(&store_file(store))?
        && let Some(h) = helper_in(&map, registry)
    {
        return Ok(Some(h));
    }
    Ok(docker_map().and_then(|(_, map)| helper_in(&map, registry)))
}

/// Stores (`Some`) or forgets (`None`) the credentials for `registry`: through its credential
/// helper when one is configured (and then no entry of the store's file keeps a copy), else in
/// the store's file. Returns whether there were credentials before (for `logout`). The caller
/// holds the store's writer lock (the temp file lives in `tmp/`).
pub(crate) fn update(
    store: &Store,
    registry: &str,
    credentials: Option<&Credentials>,
) -> Result<bool> {
    let Some(helper) = helper_for(store, registry)? else {
        return update_file(store, registry, credentials);
    };
    let server = helper_server(registry);
    let had = match credentials {
        Some(c) => {
            helper.store(&server, c)?;
            false
        }
        None => helper.erase(&server)?,
    };
    let own = store_file(store);
    let file_had = match read_file(&own)? {
        Some(map) if find_in(&map, registry, &own).ok().flatten().is_some() => {
            update_file(store, registry, None)?
        }
        _ => false,
    };
    Ok(had || file_had)
}

/// [`update`] of the store's own file: rewritten atomically, mode 0600.
fn update_file(store: &Store, registry: &str, credentials: Option<&Credentials>) -> Result<bool> {
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
        let entry = match &c.identity_token {
            Some(token) => serde_json::json!({ "identitytoken": token }),
            None => {
                let auth = STANDARD.encode(format!("{}:{}", c.username, c.password));
                serde_json::json!({ "auth": auth })
            }
        };
        auths.insert(registry.to_owned(), entry);
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
