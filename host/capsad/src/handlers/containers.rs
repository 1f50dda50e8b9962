//! `/containers/*`: list, create, inspect, the lifecycle verbs, attach, wait, logs, stats, top,
//! changes, export, archive (docker cp), rename, update, prune.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use capsa_host::engine::api::{self, filters::Filters};
use capsa_host::engine::attach::{DetachWatch, Hello, frame, parse_detach_keys};
use capsa_host::engine::{
    ContainerRecord, LogOptions, StartOutcome, State, StopOutcome, UpdateOptions, WaitCondition,
    parse_time,
};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::container;
use super::stream::{pump_output, pump_stdin, upgrade};
use crate::http::{
    ApiError, Reply, blocking, body_reader, json_response, ok_json, read_json, status, stream,
};
use crate::router::Ctx;

/// `GET /containers/json?all=&limit=&size=&filters=`.
pub async fn list(ctx: Ctx) -> Reply {
    let all = ctx.query.bool("all", false)?;
    let size = ctx.query.bool("size", false)?;
    let limit = ctx
        .query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let filters = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    let d = ctx.daemon.clone();
    let list = blocking(move || {
        Ok(api::containers::list(
            &d.engine, all, limit, size, &filters,
        )?)
    })
    .await?;
    ok_json(&json!(list))
}

/// `POST /containers/create?name=&platform=`: 201 `{"Id", "Warnings"}`.
pub async fn create(ctx: Ctx, req: Request<Incoming>) -> Reply {
    let body = read_json(req.into_body()).await?;
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "container config: expected a JSON object",
        ));
    }
    let name = ctx.query.get("name").map(str::to_owned);
    let platform = ctx.query.get("platform").map(str::to_owned);
    let (mut options, warnings) =
        api::create::from_body(&body, name.as_deref(), platform.as_deref())?;
    if options.cgroup_parent.is_none() {
        options.cgroup_parent = ctx.daemon.cgroup_parent.clone();
    }
    let d = ctx.daemon.clone();
    let record = blocking(move || {
        // Docker's message for a missing image, which makes the CLI pull and retry.
        if !d.engine.has_image(&options.image)? {
            let shown = if options.image.contains(':') || options.image.contains('@') {
                options.image.clone()
            } else {
                format!("{}:latest", options.image)
            };
            return Err(ApiError::not_found(format!("No such image: {shown}")));
        }
        Ok(d.engine.create(&options)?)
    })
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "Id": record.id, "Warnings": warnings }),
    ))
}

/// `GET /containers/{id}/json?size=`.
pub async fn inspect(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let size = ctx.query.bool("size", false)?;
    let d = ctx.daemon.clone();
    let v = blocking(move || Ok(api::containers::inspect(&d.engine, &c, size)?)).await?;
    ok_json(&v)
}

/// `GET /containers/{id}/top?ps_args=`.
pub async fn top(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let args: Vec<String> = ctx
        .query
        .get("ps_args")
        .map(|a| a.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let d = ctx.daemon.clone();
    let v = blocking(move || Ok(api::containers::top(&d.engine, &c, &args)?)).await?;
    ok_json(&v)
}

/// `GET /containers/{id}/changes`.
pub async fn changes(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let d = ctx.daemon.clone();
    let v = blocking(move || Ok(api::containers::changes(&d.engine, &c)?)).await?;
    ok_json(&v)
}

/// `GET /containers/{id}/logs?stdout=&stderr=&follow=&tail=&since=&until=&timestamps=`:
/// multiplexed frames (raw with a terminal).
pub async fn logs(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let q = &ctx.query;
    let stdout = q.bool("stdout", false)?;
    let stderr = q.bool("stderr", false)?;
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail =
        match q.get("tail").unwrap_or("all") {
            "all" | "" => None,
            n => Some(n.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("invalid tail {n:?}: a number or all"))
            })?),
        }
        .map(|n| n.max(0) as usize);
    let options = LogOptions {
        tail,
        follow: q.bool("follow", false)?,
        since: q
            .get("since")
            .filter(|s| !s.is_empty() && *s != "0")
            .map(parse_time)
            .transpose()?,
        until: q
            .get("until")
            .filter(|s| !s.is_empty() && *s != "0")
            .map(parse_time)
            .transpose()?,
        stdout,
        stderr,
    };
    if c.options.log_driver.as_deref() == Some("none") {
        return Err(ApiError::new(
            501,
            "configured logging driver does not support reading",
        ));
    }
    let timestamps = q.bool("timestamps", false)?;
    let tty = c.tty;
    let d = ctx.daemon.clone();
    let (mut out, body) = stream();
    out.eager = options.follow;
    tokio::task::spawn_blocking(move || {
        let closed = out.sender();
        let result = d.engine.logs(
            &c,
            &options,
            &mut |l| {
                let text = if timestamps {
                    format!("{} {}", l.time, l.log)
                } else {
                    l.log.clone()
                };
                let bytes = if tty {
                    text.into_bytes()
                } else {
                    let stream = if l.stream == "stderr" { 2 } else { 1 };
                    frame(stream, text.as_bytes())
                };
                out.write_all(&bytes).is_ok()
            },
            &|| closed.is_closed(),
        );
        if let Err(e) = result {
            log::debug!("logs: {e}");
        }
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    Ok(r)
}

/// `GET /containers/{id}/export`: the filesystem as a tar stream.
pub async fn export(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let d = ctx.daemon.clone();
    let (mut out, body) = stream();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = d.engine.export(&c, &mut out) {
            log::warn!("export {}: {e}", c.name);
        }
        let _ = out.flush();
        d.engine.emit_container_event(&c, "export");
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(r)
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: Docker's stats object, once or every
/// second.
pub async fn stats(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let streaming = ctx.query.bool("stream", true)?;
    let one_shot = ctx.query.bool("one-shot", false)?;
    let d = ctx.daemon.clone();
    if !streaming {
        let v = blocking(move || {
            let first = d.engine.sample(&c)?;
            if one_shot {
                return Ok(api::stats::stats_json(&c.name, &c.id, &first, None));
            }
            std::thread::sleep(Duration::from_secs(1));
            let now = d.engine.sample(&c)?;
            Ok(api::stats::stats_json(&c.name, &c.id, &now, Some(&first)))
        })
        .await?;
        return ok_json(&v);
    }
    // The first sample is taken now, so a stopped container is an error, not an empty stream.
    let first = {
        let d = d.clone();
        let c = c.clone();
        blocking(move || Ok(d.engine.sample(&c)?)).await?
    };
    let (mut out, body) = stream();
    out.eager = true;
    tokio::task::spawn_blocking(move || {
        let mut before = first;
        loop {
            std::thread::sleep(Duration::from_secs(1));
            if out.closed() {
                return;
            }
            let Ok(now) = d.engine.sample(&c) else { return };
            let v = api::stats::stats_json(&c.name, &c.id, &now, Some(&before));
            // One chunk per object, newline included: clients split the stream on chunks.
            if out.write_all(format!("{v}\n").as_bytes()).is_err() {
                return;
            }
            before = now;
        }
    });
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /containers/{id}/resize?h=&w=`.
pub async fn resize(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let (h, w) = dims(&ctx)?;
    let d = ctx.daemon.clone();
    blocking(move || {
        if d.engine.state(&c).0 != State::Running {
            return Err(ApiError::new(
                409,
                format!("Container {} is not running", c.id),
            ));
        }
        Ok(d.engine.resize(&c, h, w)?)
    })
    .await?;
    status(200)
}

/// `h` and `w` of a resize.
pub fn dims(ctx: &Ctx) -> Result<(u16, u16), ApiError> {
    let get = |k: &str| -> Result<u16, ApiError> {
        let v = ctx.query.int(k)?.unwrap_or(0);
        u16::try_from(v)
            .map_err(|_| ApiError::bad_request(format!("{k}={v}: not a terminal dimension")))
    };
    Ok((get("h")?, get("w")?))
}

/// `POST /containers/{id}/start`: 204, or 304 when it runs already. Attach connections
/// waiting for it are handed to its monitor.
pub async fn start(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let d = ctx.daemon.clone();
    let outcome = blocking(move || {
        let attach = d.take_pending(&c.id);
        Ok(d.engine.start(&c, attach)?)
    })
    .await?;
    match outcome {
        StartOutcome::Started => status(204),
        StartOutcome::AlreadyRunning => status(304),
    }
}

/// The `t` (seconds) and `signal` of stop/restart.
fn stop_params(ctx: &Ctx) -> Result<(Option<Duration>, Option<i32>), ApiError> {
    let t = ctx
        .query
        .int("t")?
        .map(|t| Duration::from_secs(t.max(0) as u64));
    let signal = ctx
        .query
        .get("signal")
        .filter(|s| !s.is_empty())
        .map(|s| {
            capsa_host::runtime::parse_signal(s)
                .map_err(|e| ApiError::bad_request(format!("signal {s:?}: {e}")))
        })
        .transpose()?;
    Ok((t, signal))
}

/// `POST /containers/{id}/stop?t=&signal=`: 204, or 304 when it was not running.
pub async fn stop(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let (t, signal) = stop_params(&ctx)?;
    let d = ctx.daemon.clone();
    match blocking(move || Ok(d.engine.stop(&c, t, signal)?)).await? {
        StopOutcome::Stopped => status(204),
        StopOutcome::NotRunning => status(304),
    }
}

/// `POST /containers/{id}/restart?t=`.
pub async fn restart(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let (t, _) = stop_params(&ctx)?;
    let d = ctx.daemon.clone();
    blocking(move || Ok(d.engine.restart(&c, t)?)).await?;
    status(204)
}

/// `POST /containers/{id}/kill?signal=` (default SIGKILL).
pub async fn kill(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let signal = ctx
        .query
        .get("signal")
        .filter(|s| !s.is_empty())
        .unwrap_or("KILL");
    let signal = capsa_host::runtime::parse_signal(signal)
        .map_err(|e| ApiError::bad_request(format!("signal {signal:?}: {e}")))?;
    let d = ctx.daemon.clone();
    blocking(move || Ok(d.engine.kill(&c, signal)?)).await?;
    status(204)
}

/// `POST /containers/{id}/pause` and `/unpause`.
pub async fn pause(ctx: Ctx, id: &str, pause: bool) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let d = ctx.daemon.clone();
    blocking(move || {
        if pause {
            Ok(d.engine.pause(&c)?)
        } else {
            Ok(d.engine.unpause(&c)?)
        }
    })
    .await?;
    status(204)
}

/// `POST /containers/{id}/rename?name=`.
pub async fn rename(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let name = ctx
        .query
        .get("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("rename: the new name is missing (name=)"))?
        .to_owned();
    let d = ctx.daemon.clone();
    blocking(move || Ok(d.engine.rename(&c, &name)?)).await?;
    status(204)
}

/// `POST /containers/{id}/update`: resources and the restart policy.
pub async fn update(ctx: Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let body = read_json(req.into_body()).await?;
    if !body.is_object() {
        return Err(ApiError::bad_request("update: expected a JSON object"));
    }
    let wrapped = json!({ "Image": "-", "HostConfig": body });
    let (parsed, _) = api::create::from_body(&wrapped, None, None)?;
    let restart = body
        .get("RestartPolicy")
        .filter(|p| !p.is_null())
        .map(|_| parsed.restart.clone());
    let update = UpdateOptions {
        resources: parsed.resources,
        restart,
    };
    let d = ctx.daemon.clone();
    blocking(move || Ok(d.engine.update(&c, &update)?)).await?;
    ok_json(&json!({ "Warnings": [] }))
}

/// `DELETE /containers/{id}?force=&v=`.
pub async fn remove(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let force = ctx.query.bool("force", false)?;
    let volumes = ctx.query.bool("v", false)?;
    if ctx.query.bool("link", false)? {
        return Err(ApiError::bad_request("links are not supported"));
    }
    let d = ctx.daemon.clone();
    blocking(move || Ok(d.engine.remove(&c, force, volumes)?)).await?;
    status(204)
}

/// `POST /containers/prune?filters=`: removes stopped containers.
pub async fn prune(ctx: Ctx) -> Reply {
    let filters = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    filters.only(&["label", "label!", "until"])?;
    let until = filters
        .get("until")
        .and_then(|v| v.first())
        .map(|u| parse_time(u))
        .transpose()?;
    let d = ctx.daemon.clone();
    let (deleted, freed) = blocking(move || {
        let mut deleted = Vec::new();
        let mut freed = 0u64;
        for c in d.engine.containers()? {
            if !matches!(d.engine.state(&c).0, State::Exited | State::Created) {
                continue;
            }
            let labels = api::containers::labels(&c);
            if !filters.labels_match(&labels) {
                continue;
            }
            if filters.get("label!").is_some_and(|not| {
                not.iter().any(|w| match w.split_once('=') {
                    Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                    None => labels.contains_key(w),
                })
            }) {
                continue;
            }
            let created = chrono::DateTime::parse_from_rfc3339(&c.created)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or(0);
            if until.is_some_and(|u| created >= u) {
                continue;
            }
            let size = api::containers::summary(&d.engine, &c, true)["SizeRw"]
                .as_u64()
                .unwrap_or(0);
            if d.engine.remove(&c, false, false).is_ok() {
                freed += size;
                deleted.push(c.id.clone());
            }
        }
        Ok((deleted, freed))
    })
    .await?;
    ok_json(&json!({ "ContainersDeleted": deleted, "SpaceReclaimed": freed }))
}

/// `POST /containers/{id}/wait?condition=`: the headers at once (the CLI starts the container
/// only then), `{"StatusCode"}` when the condition holds.
pub async fn wait(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let condition = WaitCondition::parse(ctx.query.get("condition").unwrap_or(""))?;
    let d = ctx.daemon.clone();
    let (mut out, body) = stream();
    out.eager = true;
    tokio::task::spawn_blocking(move || {
        let closed = out.sender();
        let result = d.engine.wait_for(&c, condition, &|| closed.is_closed());
        let v = match result {
            Ok(code) => json!({ "StatusCode": code, "Error": Value::Null }),
            Err(e) => json!({ "StatusCode": -1, "Error": { "Message": e.to_string() } }),
        };
        let _ = out.write_all(format!("{v}\n").as_bytes());
    });
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=&logs=&detachKeys=`: hijacks
/// the connection and joins it to the container's monitor (now when it runs, else at its
/// start, from its first byte of output).
pub async fn attach(ctx: Ctx, id: &str, mut req: Request<Incoming>) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let q = &ctx.query;
    let hello = Hello {
        stdin: q.bool("stdin", false)?,
        stdout: q.bool("stdout", false)?,
        stderr: q.bool("stderr", false)?,
        resize: None,
    };
    let logs = q.bool("logs", false)?;
    let live = q.bool("stream", false)?;
    let keys = match q.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(k) => parse_detach_keys(k)?,
        None => parse_detach_keys("ctrl-p,ctrl-q")?,
    };
    if !hello.stdout && !hello.stderr && !hello.stdin {
        return Err(ApiError::bad_request(
            "attach: choose at least one of stdin, stdout and stderr",
        ));
    }
    let multiplexed = !c.tty && ctx.at_least(1, 42);
    let (response, on_upgrade) = upgrade(&mut req, multiplexed)?;
    // The monitor end: connected now, or a socketpair whose other end waits for the start.
    let d = ctx.daemon.clone();
    let c2 = c.clone();
    let hello2 = hello.clone();
    let monitor: UnixStream = blocking(move || connect_or_wait(&d, &c2, &hello2, live)).await?;
    let history = if logs {
        let d = ctx.daemon.clone();
        let c2 = c.clone();
        blocking(move || Ok(log_history(&d.engine, &c2))).await?
    } else {
        Vec::new()
    };
    ctx.daemon.engine.emit_container_event(&c, "attach");
    let stdin = hello.stdin;
    tokio::spawn(async move {
        let client = match on_upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(e) => {
                log::debug!("attach upgrade: {e}");
                return;
            }
        };
        let _ = monitor.set_nonblocking(true);
        let Ok(monitor) = tokio::net::UnixStream::from_std(monitor) else {
            return;
        };
        let (client_r, mut client_w) = tokio::io::split(client);
        if !history.is_empty() {
            use tokio::io::AsyncWriteExt;
            let _ = client_w.write_all(&history).await;
        }
        let (monitor_r, monitor_w) = monitor.into_split();
        if !live {
            use tokio::io::AsyncWriteExt;
            let _ = client_w.shutdown().await;
            return;
        }
        let output = tokio::spawn(pump_output(monitor_r, client_w));
        if stdin {
            let detached = pump_stdin(client_r, monitor_w, DetachWatch::new(keys)).await;
            if detached {
                output.abort();
                return;
            }
        } else {
            drop(monitor_w);
            drop(client_r);
        }
        let _ = output.await;
    });
    Ok(response)
}

/// The existing log as the attach stream shows it (`logs=1`).
fn log_history(engine: &capsa_host::engine::Engine, c: &ContainerRecord) -> Vec<u8> {
    let mut out = Vec::new();
    let options = LogOptions {
        stdout: true,
        stderr: true,
        ..LogOptions::default()
    };
    let _ = engine.logs(
        c,
        &options,
        &mut |l| {
            if c.tty {
                out.extend_from_slice(l.log.as_bytes());
            } else {
                out.extend(frame(
                    if l.stream == "stderr" { 2 } else { 1 },
                    l.log.as_bytes(),
                ));
            }
            true
        },
        &|| false,
    );
    out
}

/// Connects to the running container's monitor, or, when it does not run, makes a socketpair
/// whose other end waits in the daemon for the container's start.
fn connect_or_wait(
    d: &crate::daemon::Daemon,
    c: &ContainerRecord,
    hello: &Hello,
    live: bool,
) -> Result<UnixStream, ApiError> {
    let running = matches!(d.engine.state(c).0, State::Running | State::Paused);
    if running || !live {
        if let Ok(s) = d.engine.attach_connect(c, hello) {
            return Ok(s);
        }
        if !live {
            // Only the history was asked for: nothing to join.
            let (ours, _) =
                UnixStream::pair().map_err(|e| ApiError::new(500, format!("socketpair: {e}")))?;
            return Ok(ours);
        }
    }
    let (mut ours, theirs) =
        UnixStream::pair().map_err(|e| ApiError::new(500, format!("socketpair: {e}")))?;
    capsa_host::engine::attach::send_hello(&mut ours, hello)?;
    d.pending_attach
        .lock()
        .map_err(|_| ApiError::new(500, "pending attaches: poisoned lock"))?
        .entry(c.id.clone())
        .or_default()
        .push(OwnedFd::from(theirs));
    Ok(ours)
}

/// The `path` of an archive request.
fn archive_path(ctx: &Ctx) -> Result<String, ApiError> {
    ctx.query
        .get("path")
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request("archive: path= is required"))
}

fn stat_header(stat: &capsa_host::engine::archive::PathStat) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&capsa_host::engine::archive::stat_header(stat))
        .map_err(|e| ApiError::new(500, format!("stat header: {e}")))
}

/// `HEAD /containers/{id}/archive?path=`: the path's stat in `X-Docker-Container-Path-Stat`.
pub async fn archive_head(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let path = archive_path(&ctx)?;
    let d = ctx.daemon.clone();
    let stat = blocking(move || Ok(d.engine.path_stat(&c, &path)?)).await?;
    let mut r = Response::new(crate::http::empty());
    r.headers_mut()
        .insert("x-docker-container-path-stat", stat_header(&stat)?);
    Ok(r)
}

/// `GET /containers/{id}/archive?path=`: the path as a tar stream (its stat in a header).
pub async fn archive_get(ctx: Ctx, id: &str) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let path = archive_path(&ctx)?;
    let d = ctx.daemon.clone();
    let stat = {
        let (d, c, path) = (d.clone(), c.clone(), path.clone());
        blocking(move || Ok(d.engine.path_stat(&c, &path)?)).await?
    };
    let (mut out, body) = stream();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = d.engine.archive_get(&c, &path, &mut out) {
            log::warn!("archive {}:{path}: {e}", c.name);
        }
        let _ = out.flush();
    });
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-tar"),
    );
    h.insert("x-docker-container-path-stat", stat_header(&stat)?);
    Ok(r)
}

/// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`: unpacks the tar
/// body into directory `path`.
pub async fn archive_put(ctx: Ctx, id: &str, req: Request<Incoming>) -> Reply {
    let c = container(&ctx.daemon, id).await?;
    let path = archive_path(&ctx)?;
    let no_overwrite = ctx.query.bool("noOverwriteDirNonDir", false)?;
    let keep_owners = ctx.query.bool("copyUIDGID", false)?;
    let mut input = body_reader(req.into_body());
    let d = ctx.daemon.clone();
    blocking(move || {
        let result = d
            .engine
            .archive_put(&c, &path, &mut input, keep_owners, no_overwrite);
        // The tar reader stops at the end-of-archive blocks; the client may still be sending
        // the record's padding. Read it, so the reply never races the client's last writes
        // (the docker CLI reported "broken pipe" under load). At most 1 MiB: after a failure
        // the rest of a large upload is not worth waiting for.
        let _ = std::io::copy(
            &mut std::io::Read::take(&mut input, 1 << 20),
            &mut std::io::sink(),
        );
        Ok(result?)
    })
    .await?;
    status(200)
}
