//! Credential helpers: Docker's `docker-credential-NAME` programs (`pass`, `secretservice`,
//! `ecr-login`, `gcloud`, …), which keep registry secrets out of plain files. The protocol is
//! Docker's: `get` reads the server URL on stdin and prints `{"ServerURL","Username","Secret"}`;
//! `store` reads that JSON; `erase` reads the server URL. A helper that has nothing for a server
//! says `credentials not found` (on stdout, with a non-zero exit).
//!
//! An identity token (an OAuth2 refresh token) is stored with the user name `<token>`, as
//! Docker stores it.

use std::io::Write;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::credentials::Credentials;
use super::error::{Error, Result};

/// The user name under which helpers keep an identity token instead of a password.
const TOKEN_USER: &str = "<token>";
/// What helpers print when they have nothing for a server (docker-credential-helpers' text).
const NOT_FOUND: &str = "credentials not found";

#[derive(Serialize, Deserialize)]
struct Message {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// A configured helper: `name` runs `docker-credential-<name>` from `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Helper {
    pub(crate) name: String,
}

impl Helper {
    fn failed(&self, action: &'static str, server: &str, reason: String) -> Error {
        Error::CredentialHelper {
            helper: self.name.clone(),
            action,
            server: server.to_owned(),
            reason,
        }
    }

    /// Runs the helper with `action`, `input` on its stdin; `Ok(None)` when it says it has
    /// nothing for the server.
    fn call(&self, action: &'static str, server: &str, input: &[u8]) -> Result<Option<Vec<u8>>> {
        let program = format!("docker-credential-{}", self.name);
        let mut child = Command::new(&program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("{program} is not on PATH")
                } else {
                    format!("cannot run {program}: {e}")
                };
                self.failed(action, server, hint)
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading its input is judged by its exit status.
            let _ = stdin.write_all(input);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.failed(action, server, format!("waiting for it: {e}")))?;
        if out.status.success() {
            return Ok(Some(out.stdout));
        }
        let said = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .trim()
        .to_owned();
        if said.contains(NOT_FOUND) {
            return Ok(None);
        }
        Err(self.failed(
            action,
            server,
            if said.is_empty() {
                format!("exited with {}", out.status)
            } else {
                said
            },
        ))
    }

    /// The credentials the helper keeps for `server`.
    pub(crate) fn get(&self, server: &str) -> Result<Option<Credentials>> {
        let Some(out) = self.call("get", server, server.as_bytes())? else {
            return Ok(None);
        };
        let message: Message = serde_json::from_slice(&out).map_err(|e| {
            self.failed(
                "get",
                server,
                format!("its answer is not Docker's JSON: {e}"),
            )
        })?;
        if message.username.is_empty() && message.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if message.username == TOKEN_USER {
            Credentials::identity_token(message.secret)
        } else {
            Credentials::password(message.username, message.secret)
        }))
    }

    /// Stores `credentials` for `server`.
    pub(crate) fn store(&self, server: &str, credentials: &Credentials) -> Result<()> {
        let message = match &credentials.identity_token {
            Some(token) => Message {
                server_url: server.to_owned(),
                username: TOKEN_USER.to_owned(),
                secret: token.clone(),
            },
            None => Message {
                server_url: server.to_owned(),
                username: credentials.username.clone(),
                secret: credentials.password.clone(),
            },
        };
        let input = serde_json::to_vec(&message)
            .map_err(|e| self.failed("store", server, e.to_string()))?;
        match self.call("store", server, &input)? {
            Some(_) => Ok(()),
            None => Err(self.failed("store", server, NOT_FOUND.to_owned())),
        }
    }

    /// Forgets the credentials for `server`; whether it had any.
    pub(crate) fn erase(&self, server: &str) -> Result<bool> {
        Ok(self.call("erase", server, server.as_bytes())?.is_some())
    }
}
