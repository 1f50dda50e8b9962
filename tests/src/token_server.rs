//! A registry token server for the tests (`tests/python/token_server.py`, Python's standard
//! library and the openssl CLI), in front of a docker-registry started with
//! [`crate::registry::Registry::start_with_token_auth`]: Docker's bearer-token flow as Docker Hub,
//! GHCR or Harbor speak it, on 127.0.0.1. The key pair and certificate are made here, per test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::registry::{TempDir, stop_child};

/// How long the token server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running token server; stopped (by pid) on drop.
pub struct TokenServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl TokenServer {
    /// Starts a server whose `users` (name, password) may sign in; `private` repositories
    /// (name, owners) are only theirs, any other may be pulled by anyone and pushed by users.
    pub fn start(users: &[(&str, &str)], private: &[(&str, &[&str])]) -> Result<TokenServer> {
        let dir = TempDir::new("token-server")?;
        let key = dir.join("key.pem");
        let cert = dir.join("cert.pem");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=capsa-test-token-issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .context("openssl req (the token server's certificate)")?;
        ensure!(out.status.success(), "openssl req: {out:?}");
        let users_json: serde_json::Map<String, Value> = users
            .iter()
            .map(|(u, p)| ((*u).to_owned(), Value::from(*p)))
            .collect();
        fs::write(
            dir.join("users.json"),
            Value::Object(users_json).to_string(),
        )?;
        let private_json: serde_json::Map<String, Value> = private
            .iter()
            .map(|(r, owners)| ((*r).to_owned(), Value::from(owners.to_vec())))
            .collect();
        fs::write(
            dir.join("private.json"),
            Value::Object(private_json).to_string(),
        )?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/token_server.py");
        let port_file = dir.join("port");
        let log = fs::File::create(dir.join("server.log"))?;
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--users")
            .arg(dir.join("users.json"))
            .arg("--private")
            .arg(dir.join("private.json"))
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args([
                "--issuer",
                "capsa-test-issuer",
                "--service",
                "capsa-test-registry",
            ])
            .arg("--log")
            .arg(dir.join("requests.jsonl"))
            .arg("--port-file")
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("python3 tests/python/token_server.py")?;
        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            if let Ok(text) = fs::read_to_string(&port_file) {
                break text
                    .trim()
                    .parse::<u16>()
                    .context("the token server's port")?;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the token server exited ({status}): {}",
                    fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the token server did not start in time");
            }
            sleep(Duration::from_millis(20));
        };
        Ok(TokenServer { child, port, dir })
    }

    /// The realm URL registries send clients to.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The service name tokens are for (the registry's `service`).
    pub fn service(&self) -> &'static str {
        "capsa-test-registry"
    }

    /// The issuer tokens name (the registry's `issuer`).
    pub fn issuer(&self) -> &'static str {
        "capsa-test-issuer"
    }

    /// The certificate whose key signs tokens (the registry's `rootcertbundle`).
    pub fn certificate(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// Every token request so far, oldest first: `{"method", "grant", "user", "scopes"}`.
    pub fn requests(&self) -> Result<Vec<Value>> {
        let text = fs::read_to_string(self.dir.join("requests.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).context("a token request log line"))
            .collect()
    }

    /// Makes the next token issued already expired, so that the registry refuses it.
    pub fn expire_next(&self) -> Result<()> {
        let out = Command::new("curl")
            .args(["-fsS", "-X", "POST", "--data", ""])
            .arg(format!(
                "http://127.0.0.1:{}/control/expire-next",
                self.port
            ))
            .output()
            .context("curl")?;
        ensure!(out.status.success(), "expire-next: {out:?}");
        Ok(())
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}
