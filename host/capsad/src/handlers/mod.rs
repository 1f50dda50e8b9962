//! The endpoints, grouped as Docker's API reference groups them. A handler reads the request
//! (path, query, body), makes one engine call on the blocking pool, and writes the answer:
//! translation only, no engine logic.
//!
//! `stream` holds what the hijacked endpoints (attach, exec) share: the upgrade to a raw
//! connection and the copying between it and the container's monitor.

pub mod build;
pub mod containers;
pub mod exec;
pub mod images;
pub mod networks;
pub mod stream;
pub mod system;
pub mod volumes;

use std::sync::Arc;

use capsa_host::engine::ContainerRecord;

use crate::daemon::Daemon;
use crate::http::{ApiError, blocking};

/// The container `name` names (404 when none does).
pub async fn container(daemon: &Arc<Daemon>, name: &str) -> Result<ContainerRecord, ApiError> {
    let d = daemon.clone();
    let name = name.to_owned();
    blocking(move || Ok(d.engine.container(&name)?)).await
}

/// The credentials of `X-Registry-Auth` (base64url JSON: username/password, or an identity
/// token from an earlier `POST /auth`); an empty or `{}` header is none.
pub fn registry_auth(
    headers: &hyper::HeaderMap,
) -> Result<Option<capsa_images::registry::Auth>, ApiError> {
    let Some(value) = headers.get("x-registry-auth") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
        .map_err(|_| ApiError::bad_request("X-Registry-Auth: not base64"))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::bad_request("X-Registry-Auth: not JSON"))?;
    let user = v["username"].as_str().unwrap_or_default();
    let password = v["password"].as_str().unwrap_or_default();
    let identity_token = v["identitytoken"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    if user.is_empty() && password.is_empty() && identity_token.is_none() {
        return Ok(None);
    }
    Ok(Some(capsa_images::registry::Auth {
        username: user.to_owned(),
        password: password.to_owned(),
        identity_token,
    }))
}
