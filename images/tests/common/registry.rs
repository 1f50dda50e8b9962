//! A real registry for the registry tests: Debian's `docker-registry` on 127.0.0.1 with a free
//! port, its own storage directory and config, stopped by pid when the guard drops (also when
//! a test fails). Images get there with `skopeo copy` from OCI layouts the tests build.

#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use capsa_images::Digest;

/// A running docker-registry; killed when dropped.
pub struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Its storage root.
    pub storage: PathBuf,
    /// Its log (stderr, with the access log).
    pub log: PathBuf,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

impl Registry {
    /// Starts a registry under `dir`; with `htpasswd`, every request needs those credentials.
    pub fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        fs::create_dir_all(dir).unwrap();
        let storage = dir.join("storage");
        let log = dir.join("registry.log");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let auth = match htpasswd {
            Some(p) => format!(
                "auth:\n  htpasswd:\n    realm: capsa-test\n    path: {}\n",
                p.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth}",
            storage.display()
        );
        let config_path = dir.join("config.yml");
        fs::write(&config_path, config).unwrap();
        // The access log goes to stdout, the rest to stderr: both into one file.
        let log_file = fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("docker-registry is installed (scripts/install-deps.sh)");
        let mut registry = Registry {
            child: Some(child),
            host,
            storage,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&registry.host).is_err() {
            if let Some(c) = registry.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "docker-registry exited ({status}): {}",
                    fs::read_to_string(&registry.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    /// Kills it (SIGKILL by pid) and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, digest: &Digest) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex())
            .join("data")
    }

    /// How many blob GETs capsa (its user agent) has made, from the access log.
    pub fn capsa_blob_gets(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("\"GET /v2/") && l.contains("/blobs/sha256:") && l.contains("capsa/")
            })
            .count()
    }

    /// Access log lines of capsa's requests with this method and path part.
    pub fn capsa_requests(&self, method: &str, part: &str) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains(&format!("\"{method} /v2/")) && l.contains(part) && l.contains("capsa/")
            })
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `skopeo copy [--all] oci:LAYOUT:TAG docker://HOST/REPO:TAG` over plain HTTP.
pub fn skopeo_push(layout: &Path, tag: &str, dest: &str, all: bool, creds: Option<&str>) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if all {
        cmd.arg("--all");
    }
    if let Some(c) = creds {
        cmd.arg(format!("--dest-creds={c}"));
    }
    cmd.arg(format!("oci:{}:{tag}", layout.display()));
    cmd.arg(format!("docker://{dest}"));
    let out = cmd.output().expect("skopeo is installed");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `skopeo inspect docker://REF` (plain HTTP), parsed.
pub fn skopeo_inspect(reference: &str, raw: bool) -> serde_json::Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    cmd.arg(format!("docker://{reference}"));
    let out = cmd.output().expect("skopeo is installed");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The layer digests and sizes of the manifest the registry serves for `reference` (skopeo
/// compresses plain tar layers on the way in, so they differ from the layout's).
pub fn remote_layers(reference: &str) -> Vec<(Digest, u64)> {
    let raw = skopeo_inspect(reference, true);
    raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                Digest::parse(l["digest"].as_str().unwrap()).unwrap(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}
