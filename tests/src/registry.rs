//! A local OCI registry (Debian's docker-registry on 127.0.0.1) seeded with images built by the
//! tests, for the podman and containerd tests.
//!
//! [`Registry::start`] runs `/usr/bin/docker-registry serve CONFIG` on a free loopback port with its
//! storage in a temporary directory, and stops it (by pid) when dropped. [`Registry::push_busybox`]
//! builds a small image (Debian's busybox-static, one layer) as an OCI layout with umoci and
//! pushes it with skopeo. Also here, until the fixtures are merged: [`TempDir`] and
//! [`run_with_timeout`], which the caller tests use too.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where Debian's docker-registry package puts the registry.
pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";
/// The static busybox from Debian's busybox-static, the whole of the test images.
pub const BUSYBOX: &str = "/bin/busybox";
/// How long the registry may take to answer after it starts.
const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an image build or push step may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A directory under the system's temporary directory, removed with everything in it on drop.
///
/// The name starts with `capsa-test-` and the given tag, so a leftover is easy to attribute.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new, empty directory `capsa-test-TAG-PID-N` under the system temporary directory.
    pub fn new(tag: &str) -> Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("capsa-test-{tag}-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("mkdir {}", path.display())),
            }
        }
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(rel)`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        unmount_under(&self.path);
        if let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Unmounts (lazily) every mount at or below `dir`, deepest first, so that what a caller left
/// mounted in a test's temporary directory does not outlive the test. Best effort.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Decodes the octal escapes (`\040` for a space, ...) of a /proc/self/mountinfo field.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a command did: its exit status and everything it printed.
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Its standard output, lossily decoded.
    pub stdout: String,
    /// Its standard error, lossily decoded.
    pub stderr: String,
}

impl Finished {
    /// Fails, quoting the command's output, unless it exited 0.
    pub fn ok(self, what: &str) -> Result<Finished> {
        ensure!(
            self.status.success(),
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
}

/// Runs `cmd` with stdin from /dev/null and its output captured (through files in `scratch`),
/// killing it (by pid, SIGKILL) if it has not exited within `timeout`, which is then an error.
pub fn run_with_timeout(cmd: &mut Command, scratch: &Path, timeout: Duration) -> Result<Finished> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let out_path = scratch.join(format!(".out-{n}"));
    let err_path = scratch.join(format!(".err-{n}"));
    let out = fs::File::create(&out_path).with_context(|| format!("{}", out_path.display()))?;
    let err = fs::File::create(&err_path).with_context(|| format!("{}", err_path.display()))?;
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("spawning {desc}"))?;
    let status = wait_or_kill(&mut child, timeout)?;
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let finished = Finished {
        status: status.unwrap_or_else(|| child.wait().expect("wait for a killed child")),
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    if status.is_none() {
        bail!(
            "{desc} did not finish within {timeout:?}; killed it\nstdout: {}\nstderr: {}",
            finished.stdout,
            finished.stderr
        );
    }
    Ok(finished)
}

/// Waits for `child` up to `timeout`; past that, SIGKILLs it and returns `None`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waitpid")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Ok(None);
        }
        sleep(Duration::from_millis(20));
    }
}

/// Stops a child this test started: SIGTERM to its pid, then SIGKILL if it has not exited within
/// `grace`, and reaps it. Never signals any other process.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
    let _ = kill(pid, Signal::SIGTERM);
    if let Ok(Some(_)) = wait_or_kill(child, grace) {
        return;
    }
    let _ = child.wait();
}

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A running docker-registry on 127.0.0.1, storing into its own temporary directory. Stopped
/// (SIGTERM, then SIGKILL, to its pid only) and its storage removed on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Registry {
    /// Starts the registry on a free port and waits until `GET /v2/` answers 200.
    pub fn start() -> Result<Registry> {
        Registry::start_inner(None)
    }

    /// Starts a registry that wants `user`/`password` (htpasswd, bcrypt) for every request.
    pub fn start_with_login(user: &str, password: &str) -> Result<Registry> {
        Registry::start_inner(Some((user, password)))
    }

    /// Starts a registry that wants a bearer token from `token_server` (distribution's
    /// `auth: token`: the realm, service and issuer, the certificate as the root bundle).
    pub fn start_with_token_auth(
        token_server: &crate::token_server::TokenServer,
    ) -> Result<Registry> {
        Registry::start_configured(&format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            token_server.realm(),
            token_server.service(),
            token_server.issuer(),
            token_server.certificate().display()
        ))
    }

    /// The registry's storage directory (a test may damage what it serves).
    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    fn start_configured(auth: &str) -> Result<Registry> {
        let auth = auth.to_owned();
        Registry::start_with(move |_| Ok(auth.clone()))
    }

    fn start_inner(login: Option<(&str, &str)>) -> Result<Registry> {
        Registry::start_with(|dir: &TempDir| -> Result<String> {
            let Some((user, password)) = login else {
                return Ok(String::new());
            };
            let file = dir.join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .context("htpasswd (apache2-utils)")?;
            ensure!(out.status.success(), "htpasswd failed");
            fs::write(&file, out.stdout)?;
            Ok(format!(
                "auth:\n  htpasswd:\n    realm: capsa-test\n    path: {}\n",
                file.display()
            ))
        })
    }

    /// Starts the registry with the `auth:` section `auth` makes in its directory.
    fn start_with(auth: impl Fn(&TempDir) -> Result<String>) -> Result<Registry> {
        ensure!(
            Path::new(DOCKER_REGISTRY).exists(),
            "{DOCKER_REGISTRY} not found: install Debian's docker-registry (scripts/install-deps.sh)"
        );
        let mut dir = TempDir::new("registry")?;
        fs::create_dir(dir.join("storage"))?;
        // Another process may take the port between free_port() and the registry's bind: then the
        // registry exits at once, and we try again with another port.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            let config = dir.join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n{}",
                    dir.join("storage").display(),
                    auth(&dir)?
                ),
            )?;
            let log = fs::File::create(dir.join("registry.log"))?;
            let child = Command::new(DOCKER_REGISTRY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("spawning {DOCKER_REGISTRY}"))?;
            let mut registry = Registry { child, port, dir };
            match registry.wait_ready() {
                Ok(()) => return Ok(registry),
                Err(e) => {
                    last_error = Some(e);
                    // Dropping it stops the child; the next attempt gets a new directory.
                    drop(registry);
                    dir = TempDir::new("registry")?;
                    fs::create_dir(dir.join("storage"))?;
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + REGISTRY_START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}) before answering: {}",
                    fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
                );
            }
            if self.answers_v2() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("docker-registry did not answer on {} in time", self.host());
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Whether `GET /v2/` answers `200`.
    fn answers_v2(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /v2/ HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host()
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        // 401: a registry that wants a login answers, too.
        [
            "HTTP/1.1 200",
            "HTTP/1.0 200",
            "HTTP/1.1 401",
            "HTTP/1.0 401",
        ]
        .iter()
        .any(|s| response.starts_with(s))
    }

    /// `127.0.0.1:PORT`, the registry's host part in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Builds the busybox-static test image and pushes it as `NAME:TAG`; returns the reference
    /// to pull, `127.0.0.1:PORT/NAME:TAG`.
    ///
    /// The image has one layer holding `/bin/busybox`, a symlink per applet, `/etc/passwd` and
    /// `/etc/group`; its config sets `PATH` and `Cmd ["sh"]`, for linux/amd64.
    pub fn push_busybox(&self, name: &str, tag: &str) -> Result<String> {
        let work = TempDir::new("image")?;
        let layout = build_busybox_layout(&work, tag)?;
        let reference = format!("{}/{name}:{tag}", self.host());
        run_with_timeout(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:{tag}", layout.display()))
                .arg(format!("docker://{reference}")),
            work.path(),
            TOOL_TIMEOUT,
        )?
        .ok("skopeo copy")?;
        Ok(reference)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// Builds the busybox-static image as an OCI layout `WORK/layout` tagged `tag`, with umoci.
pub fn build_busybox_layout(work: &TempDir, tag: &str) -> Result<PathBuf> {
    ensure!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} not found: install Debian's busybox-static (scripts/install-deps.sh)"
    );
    let layout = work.join("layout");
    let image = format!("{}:{tag}", layout.display());
    let bundle = work.join("bundle");
    let umoci = |args: &[&str]| -> Result<()> {
        run_with_timeout(Command::new("umoci").args(args), work.path(), TOOL_TIMEOUT)?
            .ok(&format!("umoci {}", args.join(" ")))
            .map(drop)
    };
    umoci(&["init", "--layout", &layout.to_string_lossy()])?;
    umoci(&["new", "--image", &image])?;
    umoci(&["unpack", "--image", &image, &bundle.to_string_lossy()])?;
    populate_busybox_rootfs(&bundle.join("rootfs"))?;
    umoci(&["repack", "--image", &image, &bundle.to_string_lossy()])?;
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--config.workingdir",
        "/",
    ])?;
    Ok(layout)
}

/// Fills `rootfs` with busybox-static, one symlink per applet, and root's passwd/group entries.
fn populate_busybox_rootfs(rootfs: &Path) -> Result<()> {
    for dir in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        fs::create_dir_all(rootfs.join(dir))?;
    }
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).context("copy busybox")?;
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .context("busybox --list")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if !applet.is_empty() && applet != "busybox" {
            symlink("busybox", rootfs.join("bin").join(applet))
                .with_context(|| format!("symlink bin/{applet}"))?;
        }
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}
