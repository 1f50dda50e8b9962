//! Debian's dockerd as a differential peer: started per test with everything of its own under
//! the test's directory (data root, exec root, its containerd, its trust key, an empty config
//! file so the host's /etc/docker/daemon.json does not count), no bridge and no firewall rules,
//! containers under a `capsa-test-*` cgroup parent. Stopped by pid on drop (SIGTERM, then
//! SIGKILL), its mounts and cgroups removed, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cleanup::{TempDir, remove_cgroup, unique_name, unmount_below};
use crate::daemon::{docker_bin, run_captured};
use crate::runtime::CmdOutput;

/// A running dockerd of the test's.
pub struct Dockerd {
    child: Option<Child>,
    socket: PathBuf,
    docker: PathBuf,
    cgroup_parent: String,
    dir: TempDir,
}

impl Dockerd {
    /// Starts dockerd, or `None` (with the reason) where it is not installed.
    pub fn start(label: &str) -> Result<Option<Dockerd>> {
        let Some(dockerd) = ["/usr/sbin/dockerd", "/usr/bin/dockerd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        else {
            return Ok(None);
        };
        let dir = TempDir::new(label)?;
        let socket = dir.path().join("docker.sock");
        let config = dir.path().join("daemon.json");
        std::fs::write(
            &config,
            serde_json::json!({ "deprecated-key-path": dir.path().join("key.json") }).to_string(),
        )?;
        let name = unique_name(label);
        let log = std::fs::File::create(dir.path().join("dockerd.log"))?;
        let child = Command::new(dockerd)
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--cgroup-parent",
                &name,
                "--containerd-namespace",
                &name,
                "--containerd-plugins-namespace",
                &format!("{name}-plugins"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start dockerd")?;
        let mut d = Dockerd {
            child: Some(child),
            socket,
            docker: docker_bin()?,
            cgroup_parent: format!("/{name}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = &mut d.child
                && let Some(status) = c.try_wait()?
            {
                bail!("dockerd exited ({status}): {}", d.log());
            }
            if d.socket.exists() && d.docker(&["version"])?.code() == 0 {
                return Ok(Some(d));
            }
            if Instant::now() > deadline {
                bail!("dockerd did not answer: {}", d.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The test's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    /// The docker CLI against this dockerd (its own config dir).
    pub fn docker(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut cmd = Command::new(&self.docker);
        cmd.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir().join("docker-config"))
            .args(args)
            .stdin(Stdio::null());
        run_captured(
            cmd,
            &format!("docker {}", args.join(" ")),
            &self.dir().join("io"),
            Duration::from_secs(120),
        )
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        unmount_below(self.dir.path());
        if let Err(e) = remove_cgroup(&self.cgroup_parent) {
            eprintln!("capsa-tests: cgroup {}: {e:#}", self.cgroup_parent);
        }
    }
}
