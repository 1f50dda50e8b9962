//! The registry client: pull, push, login and logout over the OCI distribution API.
//!
//! - [`reference`]: `[host[:port]/]path[:tag][@digest]`, as Docker parses it.
//! - `client`: HTTP(S) to one repository, with token (Bearer) and Basic auth.
//! - `credentials`: what `login` stores (`<store root>/auth.json`, 0600, Docker's format), and
//!   `helper`: Docker's credential helpers (`credsStore`, `credHelpers`), which keep it instead.
//! - [`mirror`]: Docker Hub's mirrors (`registry-mirrors`), tried before it by [`pull()`].
//! - `download`: one blob, verified as it arrives, resumed with `Range` after a break.
//! - [`pull()`]: manifest → platform → config → parallel downloads, unpacked as they land.
//! - [`push()`]: HEAD, cross-repository mount, monolithic or chunked upload, then the manifest.
//! - [`progress`]: the [`Progress`] trait and three ways to show it.
//!
//! Blocking, with scoped threads for parallel downloads; there is no async runtime. The
//! registry client is never on the container-start path, so its threads never meet a fork.

mod auth;
mod cli;
mod client;
mod credentials;
mod download;
pub mod error;
mod helper;
pub mod mirror;
pub mod platform;
pub mod progress;
mod pull;
mod push;
pub mod reference;

use std::collections::HashMap;
use std::path::PathBuf;

use ureq::http::Method;

pub use cli::{login_command, logout_command, pull_command, push_command};
pub use download::FetchedBlob;
pub use error::{Error, Result};
pub use mirror::Mirror;
pub use platform::Platform;
pub use progress::{Bars, BlobOutcome, Lines, Progress, Quiet};
pub use pull::{CONFIG_LIMIT, MANIFEST_LIMIT, PullOptions, PullReport, pull};
pub use push::{PushOptions, PushReport, push};
pub use reference::{ImageRef, TEST_DOCKER_HUB_API_ENV};

use crate::store::Store;
use client::Client;
use credentials::Credentials;

/// How to reach registries: which speak plain HTTP, which CA signs a private registry's
/// certificate. The system's CA bundle is always trusted.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`, as in references) reached over plain HTTP, as Docker's
    /// `insecure-registries`. Loopback hosts (`localhost`, `127.*`, `[::1]`) always are.
    pub insecure: Vec<String>,
    /// A PEM CA bundle per registry (`host[:port]` → file), trusted besides the system's.
    pub ca_files: HashMap<String, PathBuf>,
    /// Credentials for this one operation (the daemon's `X-Registry-Auth`), used instead of
    /// the stored ones.
    pub auth: Option<Auth>,
    /// Docker Hub's mirrors, in the order they are tried (Docker's `registry-mirrors`); only
    /// images of `docker.io` are pulled through them.
    pub mirrors: Vec<Mirror>,
}

/// A user name and password, or an identity token, given for one operation; `Debug` does not
/// show the secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// The user name.
    pub username: String,
    /// The password (empty with an identity token).
    pub password: String,
    /// An OAuth2 refresh token from an earlier login (Docker's `identitytoken`).
    pub identity_token: Option<String>,
}

impl Auth {
    fn credentials(&self) -> Credentials {
        match &self.identity_token {
            Some(t) if !t.is_empty() => Credentials::identity_token(t.clone()),
            _ => Credentials::password(self.username.clone(), self.password.clone()),
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Auth {{ username: {:?}, password: <hidden>, identity_token: {} }}",
            self.username,
            if self.identity_token.is_some() {
                "<hidden>"
            } else {
                "none"
            }
        )
    }
}

/// Checks `username`/`password` against `registry` (its `/v2/` endpoint, through the token
/// server when it has one) and, when accepted, stores them: through the credential helper when
/// one is configured, else in the store's `auth.json`. When the token server gives a refresh
/// token, that identity token is stored instead of the password, as Docker does.
pub fn login(
    store: &Store,
    registry: &str,
    username: &str,
    password: &str,
    options: &RegistryOptions,
) -> Result<()> {
    let (registry, credentials) = check(registry, username, password, options)?;
    let _lock = store.lock()?;
    credentials::update(store, &registry, Some(&credentials))?;
    Ok(())
}

/// Checks `username`/`password` against `registry` as [`login`] does, keeping nothing (the
/// daemon's `POST /auth`: the client keeps the credentials). Returns the identity token the
/// token server gave, if any (Docker's `IdentityToken`, which the client then keeps).
pub fn check_login(
    registry: &str,
    username: &str,
    password: &str,
    options: &RegistryOptions,
) -> Result<Option<String>> {
    check(registry, username, password, options).map(|(_, c)| c.identity_token)
}

/// The login check: the normalised registry and the accepted credentials.
fn check(
    registry: &str,
    username: &str,
    password: &str,
    options: &RegistryOptions,
) -> Result<(String, Credentials)> {
    let registry = normalise_registry(registry)?;
    let credentials = Credentials::password(username.to_owned(), password.to_owned());
    let client = Client::new(
        &registry,
        "",
        Some(credentials.clone()),
        options,
        Vec::new(),
    )?
    .asking_refresh_token();
    let refused = |detail: String| Error::LoginRefused {
        registry: registry.clone(),
        username: username.to_owned(),
        detail,
    };
    let response = match client.send(
        Method::GET,
        &client.root_url(),
        &[],
        client::Body::Empty,
        "login",
    ) {
        Ok(r) => r,
        Err(Error::Unauthorized { detail, .. }) => return Err(refused(detail)),
        Err(e) => return Err(e),
    };
    if !response.status().is_success() {
        let status = response.status().as_u16();
        return Err(refused(format!("GET /v2/ answered HTTP {status}")));
    }
    match client.refresh_token() {
        Some(token) => Ok((
            registry,
            Credentials {
                identity_token: Some(token),
                ..credentials
            },
        )),
        None => Ok((registry, credentials)),
    }
}

/// Forgets the stored credentials for `registry`; returns whether there were any.
pub fn logout(store: &Store, registry: &str) -> Result<bool> {
    let registry = normalise_registry(registry)?;
    let _lock = store.lock()?;
    credentials::update(store, &registry, None)
}

/// `docker.io`, `index.docker.io` and Docker's v1 URL all name Docker Hub; a scheme prefix
/// is dropped.
fn normalise_registry(registry: &str) -> Result<String> {
    let r = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let r = r.strip_suffix("/v1").unwrap_or(r);
    let r = if r == "index.docker.io" || r == "registry-1.docker.io" {
        reference::DOCKER_HUB
    } else {
        r
    };
    // The same check a reference's registry gets.
    ImageRef::parse(&format!("{r}/x"))
        .ok()
        .filter(|i| i.registry() == r)
        .map(|_| r.to_owned())
        .ok_or_else(|| Error::InvalidReference {
            value: registry.to_owned(),
            reason: "not a registry host[:port]",
        })
}
