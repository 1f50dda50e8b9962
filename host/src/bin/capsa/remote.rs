//! The CLI as a client of a daemon (`-H`, `CAPSA_HOST`): each command is the Engine API call
//! the docker CLI makes for it, and the answer is the same Docker JSON the local backend gets
//! from the engine library, so the output is the same.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use capsa_host::engine::api::filters::Filters;
use capsa_host::engine::archive::{PathStat, parse_stat_header};
use capsa_host::engine::attach::Demux;
use capsa_host::engine::{
    CommitOptions, ExecRequest, LogLine, LogOptions, RunOptions, SaveFormat, UpdateOptions,
    VolumeOptions, api,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::{Value, json};

use crate::backend::{Backend, Pulled, RegistryFlags, Row};
use crate::http_client::{Body, Client, Conn, DaemonError, tls_config};

/// TLS flags.
pub struct TlsFiles {
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A daemon.
pub struct Remote {
    client: Client,
}

/// Percent-encodes a query value.
fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Percent-encodes a path segment (image names keep their `/`).
fn seg(v: &str) -> String {
    v.split('/')
        .map(|p| {
            percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .replace("%2E", ".")
                .replace("%2D", "-")
                .replace("%5F", "_")
                .replace("%3A", ":")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `e` is the daemon saying 404.
fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DaemonError>()
        .is_some_and(|d| d.status == 404)
}

/// The credentials file of the CLI as a client (`~/.config/capsa/auth.json`, Docker's
/// config.json format): a daemon checks credentials at login, the client keeps them and sends
/// them with each pull and push, as the docker CLI does.
fn auth_file() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/root/.config"));
    base.join("capsa").join("auth.json")
}

fn read_auths() -> serde_json::Map<String, Value> {
    std::fs::read(auth_file())
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["auths"].as_object().cloned())
        .unwrap_or_default()
}

fn write_auths(auths: serde_json::Map<String, Value>) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = auth_file();
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(serde_json::to_vec_pretty(&json!({ "auths": auths }))?.as_slice())?;
    std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// `X-Registry-Auth` for the registry of `reference` (from the client's credentials).
fn registry_auth_header(reference: &str) -> String {
    use base64::Engine as _;
    let registry = capsa_images::registry::ImageRef::parse(reference)
        .map(|r| r.registry().to_owned())
        .unwrap_or_default();
    let auths = read_auths();
    let creds = auths
        .get(&registry)
        .and_then(|a| a["auth"].as_str())
        .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let identity_token = auths
        .get(&registry)
        .and_then(|a| a["identitytoken"].as_str())
        .map(str::to_owned);
    let v = match (identity_token, creds) {
        (Some(t), _) => json!({ "identitytoken": t, "serveraddress": registry }),
        (None, Some((u, p))) => json!({ "username": u, "password": p, "serveraddress": registry }),
        (None, None) => json!({}),
    };
    base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
}

impl Remote {
    /// A client of the daemon at `host`.
    pub fn connect(host: &str, tls: &TlsFiles) -> Result<Box<dyn Backend>> {
        let config = if tls.verify || tls.cert.is_some() {
            Some(tls_config(
                tls.ca.as_deref(),
                tls.cert.as_deref(),
                tls.key.as_deref(),
            )?)
        } else {
            None
        };
        Ok(Box::new(Remote {
            client: Client::new(host, config)?,
        }))
    }

    fn get(&self, path: &str) -> Result<Value> {
        self.client
            .request("GET", path, &[], Body::None)?
            .ok()?
            .json()
    }

    fn post(&self, path: &str, body: Option<Value>) -> Result<Value> {
        let body = match body {
            Some(v) => Body::Bytes(serde_json::to_vec(&v)?),
            None => Body::None,
        };
        self.client.request("POST", path, &[], body)?.ok()?.json()
    }

    fn delete(&self, path: &str) -> Result<Value> {
        self.client
            .request("DELETE", path, &[], Body::None)?
            .ok()?
            .json()
    }

    /// Reads a JSON-lines progress stream; returns the lines (an `error` line fails).
    fn progress_lines(
        &self,
        response: crate::http_client::Response,
        quiet: bool,
    ) -> Result<Vec<Value>> {
        let mut lines = Vec::new();
        let reader = std::io::BufReader::new(response.body);
        for line in std::io::BufRead::lines(reader) {
            let line = line.context("read the progress")?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line).context("a progress line")?;
            if let Some(e) = v["error"].as_str() {
                bail!("{e}");
            }
            if !quiet && let Some(s) = v["status"].as_str() {
                match v["id"].as_str() {
                    Some(id) if v["progressDetail"]["current"].is_null() => eprintln!("{id}: {s}"),
                    Some(_) => {}
                    None => eprintln!("{s}"),
                }
            }
            lines.push(v);
        }
        Ok(lines)
    }

    /// Copies a hijacked stream: output to our stdout/stderr (demultiplexed unless `tty`),
    /// our stdin to it when `stdin`; our terminal raw with `tty` and a size sent through
    /// `resize` (`path` of the resize endpoint) whenever it changes.
    fn interact(&self, mut conn: Conn, tty: bool, stdin: bool, resize: Option<&str>) -> Result<()> {
        use std::io::IsTerminal;
        let input = std::io::stdin();
        let raw = if tty && stdin && input.is_terminal() {
            let saved = nix::sys::termios::tcgetattr(input.as_fd()).ok();
            if let Some(s) = &saved {
                let mut r = s.clone();
                nix::sys::termios::cfmakeraw(&mut r);
                let _ = nix::sys::termios::tcsetattr(
                    input.as_fd(),
                    nix::sys::termios::SetArg::TCSANOW,
                    &r,
                );
            }
            saved
        } else {
            None
        };
        let mut size = None;
        let send_size = |size: &mut Option<(u16, u16)>| {
            if let Some(path) = resize
                && let Some(now) = terminal_size()
                && *size != Some(now)
            {
                *size = Some(now);
                let _ = self.client.request(
                    "POST",
                    &format!("{path}?h={}&w={}", now.0, now.1),
                    &[],
                    Body::None,
                );
            }
        };
        if tty {
            send_size(&mut size);
        }
        conn.set_nonblocking(true);
        let mut demux = Demux::default();
        let mut stdin_open = stdin;
        let mut buf = vec![0u8; 32768];
        let result = (|| -> Result<()> {
            loop {
                let mut ready_conn = conn.has_buffered();
                let mut ready_in = false;
                if !ready_conn {
                    let mut fds = vec![PollFd::new(
                        // SAFETY: the connection outlives this poll set.
                        unsafe { std::os::fd::BorrowedFd::borrow_raw(conn.raw_fd()) },
                        PollFlags::POLLIN,
                    )];
                    if stdin_open {
                        fds.push(PollFd::new(input.as_fd(), PollFlags::POLLIN));
                    }
                    let timeout = if tty {
                        PollTimeout::from(1000u16)
                    } else {
                        PollTimeout::NONE
                    };
                    match poll(&mut fds, timeout) {
                        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => bail!("poll: {e}"),
                    }
                    let hit = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                    ready_conn = fds.first().is_some_and(hit);
                    ready_in = fds.get(1).is_some_and(hit);
                }
                if tty {
                    send_size(&mut size);
                }
                if ready_conn {
                    match conn.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => {
                            if tty {
                                let mut out = std::io::stdout().lock();
                                out.write_all(&buf[..n])?;
                                out.flush()?;
                            } else {
                                for (stream, data) in demux.push(&buf[..n]) {
                                    if stream == 2 {
                                        std::io::stderr().write_all(&data)?;
                                    } else {
                                        let mut out = std::io::stdout().lock();
                                        out.write_all(&data)?;
                                        out.flush()?;
                                    }
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e).context("read from the daemon"),
                    }
                }
                if ready_in {
                    let n = nix::unistd::read(input.as_fd(), &mut buf).unwrap_or(0);
                    if n == 0 {
                        stdin_open = false;
                        conn.set_nonblocking(false);
                        conn.shutdown_write();
                        conn.set_nonblocking(true);
                    } else {
                        conn.set_nonblocking(false);
                        let r = conn.write_all(&buf[..n]).and_then(|()| conn.flush());
                        conn.set_nonblocking(true);
                        r.context("send stdin to the daemon")?;
                    }
                }
            }
        })();
        if let Some(saved) = raw {
            let _ = nix::sys::termios::tcsetattr(
                input.as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
        result
    }
}

/// Our terminal's size (rows, columns).
fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize to the pointer, valid for the call.
    let r = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// The tar `POST /build` sends of a context directory: `.dockerignore` applied (the Dockerfile
/// and `.dockerignore` always go, as with the docker CLI), plus the Dockerfile under
/// `.dockerfile.capsa` when it is not a file of the context. Returns the tar and the
/// Dockerfile's name in it.
fn context_tar(
    dir: &std::path::Path,
    options: &capsa_host::engine::build::BuildOptions,
) -> Result<(Vec<u8>, Option<String>)> {
    use capsa_images::build::context::Context;
    let context = Context::open(dir)?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let extra_text = match (&options.dockerfile_text, &options.dockerfile) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(p)) if p.is_absolute() && !p.starts_with(dir) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?)
        }
        _ => None,
    };
    let named = match (&extra_text, &options.dockerfile) {
        (Some(_), _) => Some(".dockerfile.capsa".to_owned()),
        (None, Some(p)) => Some(
            p.strip_prefix(dir)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned(),
        ),
        (None, None) => None,
    };
    let always = [
        named.clone().unwrap_or_else(|| "Dockerfile".into()),
        ".dockerignore".to_owned(),
    ];
    for entry in context.entries("")? {
        if entry.below.is_empty() {
            continue;
        }
        tar.append_path_with_name(&entry.path, &entry.below)
            .with_context(|| format!("add {} to the context", entry.path.display()))?;
    }
    for name in &always {
        let path = dir.join(name);
        if context.excluded(name) && path.is_file() {
            tar.append_path_with_name(&path, name)
                .with_context(|| format!("add {name} to the context"))?;
        }
    }
    if let Some(text) = &extra_text {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, ".dockerfile.capsa", text.as_bytes())
            .context("add the Dockerfile to the context")?;
    }
    Ok((tar.into_inner().context("finish the context tar")?, named))
}

impl Backend for Remote {
    fn build(
        &self,
        context: crate::backend::BuildContext,
        options: &capsa_host::engine::build::BuildOptions,
        log: &mut dyn FnMut(&str),
    ) -> Result<String> {
        let mut q = vec!["version=1".to_owned(), "rm=1".to_owned()];
        for t in &options.tags {
            q.push(format!("t={}", enc(t)));
        }
        let (mut body, dockerfile): (Box<dyn Read>, Option<String>) = match context {
            crate::backend::BuildContext::Dir(dir) => {
                let (bytes, name) = context_tar(&dir, options)?;
                (Box::new(std::io::Cursor::new(bytes)), name)
            }
            crate::backend::BuildContext::Tar(input) => {
                if options.dockerfile_text.is_some() {
                    bail!("a Dockerfile from stdin needs a context directory");
                }
                (
                    input,
                    options
                        .dockerfile
                        .as_ref()
                        .map(|p| p.to_string_lossy().into_owned()),
                )
            }
        };
        if let Some(d) = dockerfile {
            q.push(format!("dockerfile={}", enc(&d)));
        }
        if !options.build_args.is_empty() {
            q.push(format!(
                "buildargs={}",
                enc(&serde_json::to_string(&options.build_args)?)
            ));
        }
        if !options.labels.is_empty() {
            q.push(format!(
                "labels={}",
                enc(&serde_json::to_string(&options.labels)?)
            ));
        }
        if let Some(t) = &options.target {
            q.push(format!("target={}", enc(t)));
        }
        if let Some(p) = &options.platform {
            q.push(format!("platform={}", enc(p)));
        }
        if let Some(n) = &options.network {
            q.push(format!("networkmode={}", enc(n)));
        }
        if options.no_cache {
            q.push("nocache=1".into());
        }
        if options.pull {
            q.push("pull=1".into());
        }
        let response = self
            .client
            .request(
                "POST",
                &format!("/build?{}", q.join("&")),
                &[("Content-Type", "application/x-tar".into())],
                Body::Stream(&mut body),
            )?
            .ok()?;
        let mut id = None;
        for line in std::io::BufRead::lines(std::io::BufReader::new(response.body)) {
            let line = line.context("read the build's output")?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line).context("a build output line")?;
            if let Some(e) = v["error"].as_str() {
                let code = v["errorDetail"]["code"].as_i64().unwrap_or(0) as i32;
                if code > 0 {
                    return Err(capsa_host::engine::EngineError::BuildStep {
                        message: e.to_owned(),
                        code,
                    }
                    .into());
                }
                bail!("{e}");
            }
            if let Some(s) = v["stream"].as_str() {
                log(s);
            }
            if let Some(i) = v["aux"]["ID"].as_str() {
                id = Some(i.to_owned());
            }
        }
        id.context("the daemon's build ended without an image id")
    }

    fn builder_prune(&self) -> Result<(Vec<String>, u64)> {
        let v = self
            .client
            .request("POST", "/build/prune", &[], Body::None)?
            .ok()?
            .json()?;
        let entries = v["CachesDeleted"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok((entries, v["SpaceReclaimed"].as_u64().unwrap_or(0)))
    }

    fn list_containers(&self, all: bool, size: bool, filters: &Filters) -> Result<Vec<Value>> {
        let v = self.get(&format!(
            "/containers/json?all={}&size={}&filters={}",
            all as u8,
            size as u8,
            enc(&filters.to_query())
        ))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    fn inspect_container(&self, name: &str) -> Result<Option<Value>> {
        match self.get(&format!("/containers/{}/json", seg(name))) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn inspect_image(&self, name: &str) -> Result<Option<Value>> {
        match self.get(&format!("/images/{}/json", seg(name))) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list_images(&self, filters: &Filters, all: bool) -> Result<Vec<Value>> {
        let v = self.get(&format!(
            "/images/json?all={}&filters={}",
            all as u8,
            enc(&filters.to_query())
        ))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    fn history(&self, name: &str) -> Result<Vec<Value>> {
        let v = self.get(&format!("/images/{}/history", seg(name)))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    fn has_image(&self, name: &str) -> Result<bool> {
        Ok(self.inspect_image(name)?.is_some())
    }

    fn create(&self, options: &RunOptions) -> Result<(String, Vec<String>)> {
        let mut path = "/containers/create".to_owned();
        let mut params = Vec::new();
        if let Some(n) = &options.name {
            params.push(format!("name={}", enc(n)));
        }
        if let Some(p) = &options.platform {
            params.push(format!("platform={}", enc(p)));
        }
        if !params.is_empty() {
            path = format!("{path}?{}", params.join("&"));
        }
        let v = self.post(&path, Some(api::create::to_body(options)))?;
        let warnings = v["Warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok((v["Id"].as_str().unwrap_or_default().to_owned(), warnings))
    }

    fn run_attached(&self, id: &str, options: &RunOptions) -> Result<i32> {
        // docker run's order: attach, wait (its headers at once), start, copy, the wait's code.
        let conn = self.client.hijack(
            "POST",
            &format!(
                "/containers/{id}/attach?stream=1&stdout=1&stderr=1&stdin={}",
                options.interactive as u8
            ),
            Body::None,
        )?;
        let condition = if options.auto_remove {
            "removed"
        } else {
            "next-exit"
        };
        let waiter = self.client.request(
            "POST",
            &format!("/containers/{id}/wait?condition={condition}"),
            &[],
            Body::None,
        )?;
        let waiter = waiter.ok()?;
        self.post(&format!("/containers/{id}/start"), None)?;
        let resize = format!("/containers/{id}/resize");
        self.interact(conn, options.tty, options.interactive, Some(&resize))?;
        let v = waiter.json()?;
        if let Some(e) = v["Error"]["Message"].as_str() {
            bail!("{e}");
        }
        Ok(v["StatusCode"].as_i64().unwrap_or(0) as i32)
    }

    fn start(&self, name: &str) -> Result<()> {
        self.post(&format!("/containers/{}/start", seg(name)), None)?;
        Ok(())
    }

    fn stop(&self, name: &str, timeout: Option<u64>, signal: Option<&str>) -> Result<()> {
        let mut q = Vec::new();
        if let Some(t) = timeout {
            q.push(format!("t={t}"));
        }
        if let Some(s) = signal {
            q.push(format!("signal={}", enc(s)));
        }
        self.post(
            &format!("/containers/{}/stop?{}", seg(name), q.join("&")),
            None,
        )?;
        Ok(())
    }

    fn restart(&self, name: &str, timeout: Option<u64>) -> Result<()> {
        let q = timeout.map(|t| format!("?t={t}")).unwrap_or_default();
        self.post(&format!("/containers/{}/restart{q}", seg(name)), None)?;
        Ok(())
    }

    fn kill(&self, name: &str, signal: &str) -> Result<()> {
        self.post(
            &format!("/containers/{}/kill?signal={}", seg(name), enc(signal)),
            None,
        )?;
        Ok(())
    }

    fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        self.delete(&format!(
            "/containers/{}?force={}&v={}",
            seg(name),
            force as u8,
            volumes as u8
        ))?;
        Ok(())
    }

    fn pause(&self, name: &str) -> Result<()> {
        self.post(&format!("/containers/{}/pause", seg(name)), None)?;
        Ok(())
    }

    fn unpause(&self, name: &str) -> Result<()> {
        self.post(&format!("/containers/{}/unpause", seg(name)), None)?;
        Ok(())
    }

    fn wait(&self, name: &str) -> Result<i32> {
        let v = self.post(&format!("/containers/{}/wait", seg(name)), None)?;
        if let Some(e) = v["Error"]["Message"].as_str() {
            bail!("{e}");
        }
        Ok(v["StatusCode"].as_i64().unwrap_or(0) as i32)
    }

    fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        self.post(
            &format!("/containers/{}/rename?name={}", seg(name), enc(new_name)),
            None,
        )?;
        Ok(())
    }

    fn update(&self, name: &str, update: &UpdateOptions) -> Result<()> {
        let o = RunOptions {
            resources: update.resources.clone(),
            restart: update.restart.clone().unwrap_or_default(),
            ..RunOptions::default()
        };
        let mut body = api::create::to_body(&o)["HostConfig"].clone();
        if update.restart.is_none()
            && let Some(m) = body.as_object_mut()
        {
            m.remove("RestartPolicy");
        }
        self.post(&format!("/containers/{}/update", seg(name)), Some(body))?;
        Ok(())
    }

    fn logs(&self, name: &str, options: &LogOptions, emit: &mut dyn FnMut(&LogLine)) -> Result<()> {
        let tty = self
            .inspect_container(name)?
            .with_context(|| format!("No such container: {name}"))?["Config"]["Tty"]
            .as_bool()
            .unwrap_or(false);
        let mut q = vec![
            format!("stdout={}", options.stdout as u8),
            format!("stderr={}", options.stderr as u8),
            format!("follow={}", options.follow as u8),
            "timestamps=1".to_owned(),
        ];
        if let Some(t) = options.tail {
            q.push(format!("tail={t}"));
        }
        if let Some(s) = options.since {
            q.push(format!(
                "since={}.{:09}",
                s / 1_000_000_000,
                s % 1_000_000_000
            ));
        }
        if let Some(u) = options.until {
            q.push(format!(
                "until={}.{:09}",
                u / 1_000_000_000,
                u % 1_000_000_000
            ));
        }
        let mut response = self
            .client
            .request(
                "GET",
                &format!("/containers/{}/logs?{}", seg(name), q.join("&")),
                &[],
                Body::None,
            )?
            .ok()?;
        let mut demux = Demux::default();
        let mut partial: [Vec<u8>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut buf = vec![0u8; 32768];
        let mut emit_line = |stream: u8, line: &[u8]| {
            let text = String::from_utf8_lossy(line);
            let (time, log) = text.split_once(' ').unwrap_or(("", &text));
            emit(&LogLine {
                log: log.to_owned(),
                stream: if stream == 2 { "stderr" } else { "stdout" }.to_owned(),
                time: time.to_owned(),
            });
        };
        loop {
            let n = response.body.read(&mut buf).context("read the logs")?;
            if n == 0 {
                break;
            }
            let frames = if tty {
                vec![(1u8, buf[..n].to_vec())]
            } else {
                demux.push(&buf[..n])
            };
            for (stream, data) in frames {
                let p = &mut partial[(stream as usize).min(2)];
                p.extend_from_slice(&data);
                while let Some(pos) = p.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = p.drain(..=pos).collect();
                    emit_line(stream, &line);
                }
            }
        }
        for (i, p) in partial.iter().enumerate() {
            if !p.is_empty() {
                emit_line(i as u8, p);
            }
        }
        Ok(())
    }

    fn exec(&self, name: &str, request: &ExecRequest) -> Result<i32> {
        let v = self.post(
            &format!("/containers/{}/exec", seg(name)),
            Some(json!({
                "AttachStdin": request.interactive,
                "AttachStdout": true,
                "AttachStderr": true,
                "Tty": request.tty,
                "Env": request.env,
                "Cmd": request.args,
                "WorkingDir": request.workdir.clone().unwrap_or_default(),
                "User": request.user.clone().unwrap_or_default(),
            })),
        )?;
        let id = v["Id"].as_str().context("exec create: no id")?.to_owned();
        let start = json!({ "Detach": request.detach, "Tty": request.tty });
        if request.detach {
            self.post(&format!("/exec/{id}/start"), Some(start))?;
            return Ok(0);
        }
        let conn = self.client.hijack(
            "POST",
            &format!("/exec/{id}/start"),
            Body::Bytes(serde_json::to_vec(&start)?),
        )?;
        let resize = format!("/exec/{id}/resize");
        self.interact(conn, request.tty, request.interactive, Some(&resize))?;
        let info = self.get(&format!("/exec/{id}/json"))?;
        Ok(info["ExitCode"].as_i64().unwrap_or(0) as i32)
    }

    fn top(&self, name: &str, ps_args: &[String]) -> Result<Value> {
        let q = if ps_args.is_empty() {
            String::new()
        } else {
            format!("?ps_args={}", enc(&ps_args.join(" ")))
        };
        self.get(&format!("/containers/{}/top{q}", seg(name)))
    }

    fn stats_rows(&self, names: &[String]) -> Result<Vec<Row>> {
        let names: Vec<String> = if names.is_empty() {
            self.list_containers(false, false, &Filters::default())?
                .iter()
                .filter_map(|c| c["Id"].as_str().map(String::from))
                .collect()
        } else {
            names.to_vec()
        };
        let mut rows = Vec::new();
        for n in names {
            let v = self.get(&format!("/containers/{}/stats?stream=0", seg(&n)))?;
            rows.push(crate::backend::stats_row(&v));
        }
        Ok(rows)
    }

    fn diff(&self, name: &str) -> Result<Vec<Value>> {
        Ok(self
            .get(&format!("/containers/{}/changes", seg(name)))?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn commit(&self, name: &str, options: &CommitOptions) -> Result<String> {
        let mut q = vec![
            format!("container={}", enc(name)),
            format!("pause={}", options.pause as u8),
        ];
        if let Some(r) = &options.reference {
            match r.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                Some((repo, tag)) => q.push(format!("repo={}&tag={}", enc(repo), enc(tag))),
                None => q.push(format!("repo={}", enc(r))),
            }
        }
        if let Some(c) = &options.comment {
            q.push(format!("comment={}", enc(c)));
        }
        if let Some(a) = &options.author {
            q.push(format!("author={}", enc(a)));
        }
        for c in &options.changes {
            q.push(format!("changes={}", enc(c)));
        }
        let v = self.post(&format!("/commit?{}", q.join("&")), None)?;
        Ok(v["Id"].as_str().unwrap_or_default().to_owned())
    }

    fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        flags: &RegistryFlags,
    ) -> Result<Pulled> {
        let (image, tag) = match reference.rsplit_once('@') {
            Some((i, d)) => (i.to_owned(), d.to_owned()),
            None => match reference.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                Some((i, t)) => (i.to_owned(), t.to_owned()),
                None => (reference.to_owned(), "latest".to_owned()),
            },
        };
        let mut path = format!("/images/create?fromImage={}&tag={}", enc(&image), enc(&tag));
        if let Some(p) = platform {
            path.push_str(&format!("&platform={}", enc(p)));
        }
        let response = self
            .client
            .request(
                "POST",
                &path,
                &[("X-Registry-Auth", registry_auth_header(reference))],
                Body::None,
            )?
            .ok()?;
        let lines = self.progress_lines(response, flags.quiet)?;
        let status = |prefix: &str| {
            lines
                .iter()
                .filter_map(|l| l["status"].as_str())
                .find_map(|s| s.strip_prefix(prefix).map(str::to_owned))
        };
        let count = |what: &str| lines.iter().filter(|l| l["status"] == what).count();
        let digest = status("Digest: ").unwrap_or_default();
        let shown = if tag.starts_with("sha256:") {
            format!("{image}@{tag}")
        } else {
            format!("{image}:{tag}")
        };
        let id = self
            .inspect_image(&shown)?
            .and_then(|v| v["Id"].as_str().map(String::from))
            .unwrap_or_default();
        Ok(Pulled {
            id,
            digest,
            fetched: count("Download complete"),
            reused: count("Already exists"),
        })
    }

    fn push(&self, image: &str, destination: Option<&str>, flags: &RegistryFlags) -> Result<()> {
        let target = destination.unwrap_or(image);
        if destination.is_some() {
            self.tag(image, target)?;
        }
        let (name, tag) = match target.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((n, t)) => (n.to_owned(), t.to_owned()),
            None => (target.to_owned(), "latest".to_owned()),
        };
        let response = self
            .client
            .request(
                "POST",
                &format!("/images/{}/push?tag={}", seg(&name), enc(&tag)),
                &[("X-Registry-Auth", registry_auth_header(target))],
                Body::None,
            )?
            .ok()?;
        let lines = self.progress_lines(response, flags.quiet)?;
        if let Some(d) = lines.iter().find_map(|l| l["aux"]["Digest"].as_str()) {
            println!("Digest: {d}");
        }
        Ok(())
    }

    fn login(&self, server: &str, user: &str, password: &str, _insecure: bool) -> Result<()> {
        let answer = self.post(
            "/auth",
            Some(json!({ "username": user, "password": password, "serveraddress": server })),
        )?;
        use base64::Engine as _;
        let mut auths = read_auths();
        // The registry's identity token, when its token server gave one, instead of the
        // password (as the docker CLI keeps it).
        let entry = match answer["IdentityToken"].as_str().filter(|t| !t.is_empty()) {
            Some(token) => json!({ "identitytoken": token }),
            None => json!({
                "auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            }),
        };
        auths.insert(server.to_owned(), entry);
        write_auths(auths)
    }

    fn logout(&self, server: &str) -> Result<bool> {
        let mut auths = read_auths();
        let had = auths.remove(server).is_some();
        write_auths(auths)?;
        Ok(had)
    }

    fn load(&self, input: &mut dyn Read, path: Option<&std::path::Path>) -> Result<Vec<String>> {
        let mut file;
        let body: &mut dyn Read = match path {
            Some(p) if p.is_dir() => bail!(
                "{}: an OCI layout directory loads only without a daemon (-H); send an archive",
                p.display()
            ),
            Some(p) => {
                file = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
                &mut file
            }
            None => input,
        };
        let response = self
            .client
            .request(
                "POST",
                "/images/load?quiet=0",
                &[("Content-Type", "application/x-tar".into())],
                Body::Stream(body),
            )?
            .ok()?;
        let mut names = Vec::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(response.body)) {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line)?;
            if let Some(e) = v["error"].as_str() {
                bail!("{e}");
            }
            if let Some(s) = v["stream"].as_str() {
                let s = s.trim();
                if let Some(n) = s
                    .strip_prefix("Loaded image: ")
                    .or_else(|| s.strip_prefix("Loaded image ID: "))
                {
                    names.push(n.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn save(&self, names: &[String], format: SaveFormat, out: &mut dyn Write) -> Result<()> {
        if format != SaveFormat::Docker {
            bail!("a daemon saves docker archives (docker save's format); use --format docker");
        }
        let q: Vec<String> = names.iter().map(|n| format!("names={}", enc(n))).collect();
        let mut response = self
            .client
            .request(
                "GET",
                &format!("/images/get?{}", q.join("&")),
                &[],
                Body::None,
            )?
            .ok()?;
        std::io::copy(&mut response.body, out).context("write the archive")?;
        Ok(())
    }

    fn save_oci_dir(&self, _names: &[String], _dir: &std::path::Path) -> Result<()> {
        bail!(
            "--format oci-dir writes a directory of this machine: it needs the local store (no -H)"
        )
    }

    fn import(
        &self,
        input: &mut dyn Read,
        reference: Option<&str>,
        message: Option<&str>,
        changes: &[String],
    ) -> Result<String> {
        let mut q = vec!["fromSrc=-".to_owned()];
        if let Some(r) = reference {
            match r.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                Some((repo, tag)) => q.push(format!("repo={}&tag={}", enc(repo), enc(tag))),
                None => q.push(format!("repo={}", enc(r))),
            }
        }
        if let Some(m) = message {
            q.push(format!("message={}", enc(m)));
        }
        for c in changes {
            q.push(format!("changes={}", enc(c)));
        }
        let v = self
            .client
            .request(
                "POST",
                &format!("/images/create?{}", q.join("&")),
                &[("Content-Type", "application/x-tar".into())],
                Body::Stream(input),
            )?
            .ok()?
            .json()?;
        Ok(v["status"].as_str().unwrap_or_default().to_owned())
    }

    fn tag(&self, source: &str, target: &str) -> Result<()> {
        let (repo, tag) = match target.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((r, t)) => (r.to_owned(), t.to_owned()),
            None => (target.to_owned(), "latest".to_owned()),
        };
        self.post(
            &format!(
                "/images/{}/tag?repo={}&tag={}",
                seg(source),
                enc(&repo),
                enc(&tag)
            ),
            None,
        )?;
        Ok(())
    }

    fn rmi(&self, name: &str, force: bool) -> Result<Vec<Value>> {
        Ok(self
            .delete(&format!("/images/{}?force={}", seg(name), force as u8))?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn image_prune(&self, all: bool) -> Result<(Vec<Value>, u64)> {
        let filters = if all {
            r#"{"dangling":["false"]}"#
        } else {
            "{}"
        };
        let v = self.post(&format!("/images/prune?filters={}", enc(filters)), None)?;
        Ok((
            v["ImagesDeleted"].as_array().cloned().unwrap_or_default(),
            v["SpaceReclaimed"].as_u64().unwrap_or(0),
        ))
    }

    fn volume_create(&self, options: &VolumeOptions) -> Result<Value> {
        self.post(
            "/volumes/create",
            Some(json!({
                "Name": options.name, "Driver": options.driver,
                "Labels": options.labels, "DriverOpts": options.driver_opts,
            })),
        )
    }

    fn volume_list(&self, filters: &Filters) -> Result<Vec<Value>> {
        let v = self.get(&format!("/volumes?filters={}", enc(&filters.to_query())))?;
        Ok(v["Volumes"].as_array().cloned().unwrap_or_default())
    }

    fn volume_inspect(&self, name: &str) -> Result<Value> {
        self.get(&format!("/volumes/{}", seg(name)))
    }

    fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        self.delete(&format!("/volumes/{}?force={}", seg(name), force as u8))?;
        Ok(())
    }

    fn network_create(&self, body: &Value) -> Result<Value> {
        self.post("/networks/create", Some(body.clone()))
    }

    fn network_list(&self, filters: &Filters) -> Result<Vec<Value>> {
        let v = self.get(&format!("/networks?filters={}", enc(&filters.to_query())))?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    fn network_inspect(&self, name: &str) -> Result<Value> {
        self.get(&format!("/networks/{}", seg(name)))
    }

    fn network_remove(&self, name: &str) -> Result<()> {
        self.delete(&format!("/networks/{}", seg(name)))?;
        Ok(())
    }

    fn network_prune(&self, filters: &Filters) -> Result<Vec<String>> {
        let v = self.post(
            &format!("/networks/prune?filters={}", enc(&filters.to_query())),
            None,
        )?;
        Ok(v["NetworksDeleted"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn network_connect(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
        ip: Option<&str>,
    ) -> Result<()> {
        let mut endpoint = json!({ "Aliases": aliases });
        if let Some(ip) = ip {
            endpoint["IPAMConfig"] = json!({ "IPv4Address": ip });
        }
        self.post(
            &format!("/networks/{}/connect", seg(network)),
            Some(json!({ "Container": container, "EndpointConfig": endpoint })),
        )?;
        Ok(())
    }

    fn network_disconnect(&self, network: &str, container: &str) -> Result<()> {
        self.post(
            &format!("/networks/{}/disconnect", seg(network)),
            Some(json!({ "Container": container })),
        )?;
        Ok(())
    }

    fn volume_prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let filters = if all { r#"{"all":["true"]}"# } else { "{}" };
        let v = self.post(&format!("/volumes/prune?filters={}", enc(filters)), None)?;
        let removed = v["VolumesDeleted"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok((removed, v["SpaceReclaimed"].as_u64().unwrap_or(0)))
    }

    fn version(&self) -> Result<Value> {
        self.get("/version")
    }

    fn info(&self) -> Result<Value> {
        self.get("/info")
    }

    fn events(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        filters: &Filters,
        emit: &mut dyn FnMut(&Value) -> bool,
    ) -> Result<()> {
        let mut q = vec![format!("filters={}", enc(&filters.to_query()))];
        if let Some(s) = since {
            q.push(format!("since={}", enc(s)));
        }
        if let Some(u) = until {
            q.push(format!("until={}", enc(u)));
        }
        let response = self
            .client
            .request("GET", &format!("/events?{}", q.join("&")), &[], Body::None)?
            .ok()?;
        for line in std::io::BufRead::lines(std::io::BufReader::new(response.body)) {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line)?;
            if !emit(&v) {
                break;
            }
        }
        Ok(())
    }

    fn path_stat(&self, name: &str, path: &str) -> Result<PathStat> {
        let r = self
            .client
            .request(
                "HEAD",
                &format!("/containers/{}/archive?path={}", seg(name), enc(path)),
                &[],
                Body::None,
            )?
            .ok()?;
        r.header("x-docker-container-path-stat")
            .and_then(parse_stat_header)
            .context("the daemon sent no path stat")
    }

    fn copy_from(&self, name: &str, path: &str, out: &mut dyn Write) -> Result<PathStat> {
        let mut r = self
            .client
            .request(
                "GET",
                &format!("/containers/{}/archive?path={}", seg(name), enc(path)),
                &[],
                Body::None,
            )?
            .ok()?;
        let stat = r
            .header("x-docker-container-path-stat")
            .and_then(parse_stat_header)
            .context("the daemon sent no path stat")?;
        std::io::copy(&mut r.body, out).context("read the archive")?;
        Ok(stat)
    }

    fn export(&self, name: &str, out: &mut dyn Write) -> Result<()> {
        let mut r = self
            .client
            .request(
                "GET",
                &format!("/containers/{}/export", seg(name)),
                &[],
                Body::None,
            )?
            .ok()?;
        std::io::copy(&mut r.body, out).context("read the export")?;
        Ok(())
    }

    fn copy_to(&self, name: &str, dir: &str, input: &mut dyn Read) -> Result<()> {
        self.client
            .request(
                "PUT",
                &format!("/containers/{}/archive?path={}", seg(name), enc(dir)),
                &[("Content-Type", "application/x-tar".into())],
                Body::Stream(input),
            )?
            .ok()?;
        Ok(())
    }
}
