//! `/containers/{id}/exec` and `/exec/{id}/*`: an exec instance is recorded by the engine and
//! run by a helper process (`capsa-monitor --exec`, exec'd: the daemon never forks). Its stdio
//! are pipes the daemon frames onto the hijacked connection, or with a terminal the pty master,
//! which the helper's runtime sends to a socket of the daemon's.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;

use capsa_host::engine::attach::{DetachWatch, frame, parse_detach_keys, set_window_size};
use capsa_host::engine::{ExecConfig, exec_inspect_json};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::container;
use super::stream::{pump_stdin, upgrade};
use crate::http::{ApiError, Reply, blocking, json_response, ok_json, read_json, status};
use crate::router::Ctx;

/// `POST /containers/{id}/exec`: 201 `{"Id"}`.
pub async fn create(ctx: Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let body = read_json(req.into_body()).await?;
    if !body.is_object() {
        return Err(ApiError::bad_request("exec: expected a JSON object"));
    }
    // Clients send `null` for what they leave unset.
    let body = match body {
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    };
    let config: ExecConfig = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("exec config: {e}")))?;
    let d = ctx.daemon.clone();
    let record = blocking(move || Ok(d.engine.exec_create(&c, config)?)).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "Id": record.id }),
    ))
}

/// `GET /exec/{id}/json`.
pub async fn inspect(ctx: Ctx, id: &str) -> Reply {
    let d = ctx.daemon.clone();
    let id = id.to_owned();
    let v = blocking(move || {
        let r = d.engine.exec_record(&id)?;
        Ok(exec_inspect_json(&d.engine, &r))
    })
    .await?;
    ok_json(&v)
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn resize(ctx: Ctx, id: &str) -> Reply {
    let (h, w) = super::containers::dims(&ctx)?;
    let d = ctx.daemon.clone();
    let id = id.to_owned();
    blocking(move || {
        let r = d.engine.exec_record(&id)?;
        let master = d
            .exec_terminals
            .lock()
            .ok()
            .and_then(|m| m.get(&r.id).cloned());
        if let Some(m) = master {
            set_window_size(&m, h, w)
                .map_err(|e| ApiError::new(500, format!("resize exec {id}: {e}")))?;
        }
        Ok(())
    })
    .await?;
    status(200)
}

/// `POST /exec/{id}/start` with `{"Detach", "Tty", "ConsoleSize"}`.
pub async fn start(ctx: Ctx, id: &str, mut req: Request<Incoming>) -> Reply {
    let d = ctx.daemon.clone();
    let exec_id = id.to_owned();
    let record = {
        let d = d.clone();
        let id = exec_id.clone();
        blocking(move || Ok(d.engine.exec_record(&id)?)).await?
    };
    // The body comes before the upgrade; read it without consuming the request.
    let body_bytes =
        crate::http::read_body_in_place(req.body_mut(), crate::http::JSON_LIMIT).await?;
    let body: serde_json::Value = if body_bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body_bytes)
            .map_err(|e| ApiError::bad_request(format!("exec start: invalid JSON: {e}")))?
    };
    let detach = body["Detach"].as_bool().unwrap_or(false);
    let tty = body["Tty"].as_bool().unwrap_or(record.config.tty);
    let size = body["ConsoleSize"]
        .as_array()
        .and_then(|a| Some((a.first()?.as_u64()? as u16, a.get(1)?.as_u64()? as u16)))
        .filter(|(h, w)| *h > 0 && *w > 0);
    {
        let d = d.clone();
        let id = exec_id.clone();
        blocking(move || Ok(d.engine.exec_mark_started(&id)?)).await?;
    }
    let config = record.config.clone();
    if detach {
        let d2 = d.clone();
        let r = record.clone();
        let console = if tty {
            Some(console_listener(&d, &r.id)?)
        } else {
            None
        };
        let (child, path) = {
            let console_path = console.as_ref().map(|(p, _)| p.clone());
            let d = d2.clone();
            let r2 = r.clone();
            let child = blocking(move || {
                Ok(d.engine.exec_spawn(
                    &r2,
                    Stdio::null(),
                    Stdio::null(),
                    Stdio::null(),
                    console_path.as_deref(),
                )?)
            })
            .await?;
            (child, console)
        };
        tokio::task::spawn_blocking(move || {
            let mut child = child;
            // A detached terminal: take the master so the helper can go on, keep it for resize.
            if let Some((p, listener)) = path {
                if let Ok(master) = receive_master(&listener)
                    && let Ok(mut m) = d2.exec_terminals.lock()
                {
                    m.insert(r.id.clone(), Arc::new(master));
                }
                let _ = std::fs::remove_file(p);
            }
            let _ = child.wait();
            if let Ok(mut m) = d2.exec_terminals.lock() {
                m.remove(&r.id);
            }
        });
        return status(200);
    }
    let (response, on_upgrade) = upgrade(&mut req, !tty && ctx.at_least(1, 42))?;
    let keys = if config.detach_keys.is_empty() {
        Vec::new()
    } else {
        parse_detach_keys(&config.detach_keys)?
    };
    let console = if tty {
        Some(console_listener(&d, &record.id)?)
    } else {
        None
    };
    let spawned = {
        let d = d.clone();
        let r = record.clone();
        let console_path = console.as_ref().map(|(p, _)| p.clone());
        let attach_stdin = config.attach_stdin;
        blocking(move || {
            let stdin = if attach_stdin && console_path.is_none() {
                Stdio::piped()
            } else {
                Stdio::null()
            };
            let (out, err) = if console_path.is_some() {
                (Stdio::null(), Stdio::null())
            } else {
                (Stdio::piped(), Stdio::piped())
            };
            Ok(d.engine
                .exec_spawn(&r, stdin, out, err, console_path.as_deref())?)
        })
        .await?
    };
    let d2 = d.clone();
    let exec_id2 = record.id.clone();
    tokio::spawn(async move {
        let client = match on_upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(e) => {
                log::debug!("exec upgrade: {e}");
                return;
            }
        };
        match console {
            Some((path, listener)) => {
                run_tty(
                    d2,
                    exec_id2,
                    spawned,
                    path,
                    listener,
                    client,
                    keys,
                    size,
                    config.attach_stdin,
                )
                .await
            }
            None => {
                run_pipes(
                    spawned,
                    client,
                    keys,
                    config.attach_stdout,
                    config.attach_stderr,
                )
                .await
            }
        }
    });
    Ok(response)
}

/// A listening socket the exec helper's runtime sends the pty master to.
fn console_listener(
    d: &Arc<crate::daemon::Daemon>,
    exec_id: &str,
) -> Result<(std::path::PathBuf, std::os::unix::net::UnixListener), ApiError> {
    let dir = d.engine.state_dir().join("consoles");
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::new(500, format!("mkdir {}: {e}", dir.display())))?;
    let path = dir.join(format!("{}.sock", &exec_id[..exec_id.len().min(24)]));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .map_err(|e| ApiError::new(500, format!("bind {}: {e}", path.display())))?;
    Ok((path, listener))
}

/// Accepts the runtime's connection and receives the pty master (SCM_RIGHTS).
fn receive_master(listener: &std::os::unix::net::UnixListener) -> std::io::Result<OwnedFd> {
    let (conn, _) = listener.accept()?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    capsa_host::sys::socket::recv_fd(conn.as_fd().as_raw_fd())
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .ok_or_else(|| std::io::Error::other("no pty master received"))
}

/// An exec with pipes: stdout and stderr framed (or raw) onto the client, the client's bytes
/// to stdin; the stream ends after the process has exited (its exit code recorded).
async fn run_pipes(
    mut child: std::process::Child,
    client: super::stream::Upgraded,
    keys: Vec<u8>,
    want_out: bool,
    want_err: bool,
) {
    let (client_r, client_w) = tokio::io::split(client);
    let client_w = Arc::new(tokio::sync::Mutex::new(client_w));
    let mut tasks = Vec::new();
    for (pipe, stream_no, wanted) in [
        (child.stdout.take().map(OwnedFd::from), 1u8, want_out),
        (child.stderr.take().map(OwnedFd::from), 2u8, want_err),
    ] {
        let Some(fd) = pipe else { continue };
        let w = client_w.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(file) = tokio_pipe(fd) else { return };
            let mut file = file;
            let mut buf = vec![0u8; 32768];
            loop {
                let n = match file.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if !wanted {
                    continue;
                }
                let mut guard = w.lock().await;
                if guard.write_all(&frame(stream_no, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }));
    }
    let stdin_task = child.stdin.take().map(|p| {
        let fd = OwnedFd::from(p);
        tokio::spawn(async move {
            if let Ok(pipe) = tokio_pipe_writer(fd) {
                pump_stdin(client_r, pipe, DetachWatch::new(keys)).await;
            }
        })
    });
    for t in tasks {
        let _ = t.await;
    }
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    if let Some(t) = stdin_task {
        t.abort();
    }
    let mut w = client_w.lock().await;
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

/// An exec with a terminal: the pty master (from the helper's runtime) both ways.
#[allow(clippy::too_many_arguments)]
async fn run_tty(
    d: Arc<crate::daemon::Daemon>,
    exec_id: String,
    mut child: std::process::Child,
    path: std::path::PathBuf,
    listener: std::os::unix::net::UnixListener,
    client: super::stream::Upgraded,
    keys: Vec<u8>,
    size: Option<(u16, u16)>,
    stdin: bool,
) {
    let master = tokio::task::spawn_blocking(move || receive_master(&listener)).await;
    let _ = std::fs::remove_file(&path);
    let master = match master {
        Ok(Ok(m)) => m,
        _ => {
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            return;
        }
    };
    if let Some((h, w)) = size {
        let _ = set_window_size(&master, h, w);
    }
    let master = Arc::new(master);
    if let Ok(mut m) = d.exec_terminals.lock() {
        m.insert(exec_id.clone(), master.clone());
    }
    let (client_r, mut client_w) = tokio::io::split(client);
    let reader = match master.try_clone().map(tokio_pipe) {
        Ok(Ok(r)) => r,
        _ => return,
    };
    let output = tokio::spawn(async move {
        let mut reader = reader;
        let mut buf = vec![0u8; 32768];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if client_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        client_w
    });
    let input = if stdin {
        match master.try_clone().map(tokio_pipe_writer) {
            Ok(Ok(w)) => Some(tokio::spawn(pump_stdin(
                client_r,
                w,
                DetachWatch::new(keys),
            ))),
            _ => None,
        }
    } else {
        None
    };
    let client_w = output.await;
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    if let Some(i) = input {
        i.abort();
    }
    if let Ok(mut m) = d.exec_terminals.lock() {
        m.remove(&exec_id);
    }
    if let Ok(mut w) = client_w {
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    }
}

/// A pipe or pty descriptor for async reads.
fn tokio_pipe(fd: OwnedFd) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    set_nonblocking(&fd)?;
    tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd)
}

/// A pipe or pty descriptor for async writes.
fn tokio_pipe_writer(fd: OwnedFd) -> std::io::Result<tokio::net::unix::pipe::Sender> {
    set_nonblocking(&fd)?;
    tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(fd)
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
