//! `/images/*` and `/commit`: list, inspect, history, pull and import (`/images/create`), push,
//! tag, remove, save (`get`), load, prune. Pull and push stream dockerd's progress lines; an
//! error before the first line is the HTTP status, after it an `{"error"}` line.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use capsa_host::engine::api::{self, filters::Filters};
use capsa_host::engine::{CommitOptions, SaveFormat};
use capsa_images::Digest;
use capsa_images::registry::{BlobOutcome, Progress};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{container, registry_auth};
use crate::http::{
    ApiError, Body, Reply, StreamWriter, blocking, body_reader, json_response, ok_json, status,
    stream,
};
use crate::router::Ctx;

/// `GET /images/json?filters=&all=`.
pub async fn list(ctx: Ctx) -> Reply {
    let filters = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    let all = ctx.query.bool("all", false)?;
    let d = ctx.daemon.clone();
    let v = blocking(move || Ok(api::images::list(&d.engine, &filters, all)?)).await?;
    ok_json(&json!(v))
}

/// `GET /images/{name}/json`.
pub async fn inspect(ctx: Ctx, name: &str) -> Reply {
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    let v = blocking(move || Ok(api::images::inspect(&d.engine, &name)?)).await?;
    ok_json(&v)
}

/// `GET /images/{name}/history`.
pub async fn history(ctx: Ctx, name: &str) -> Reply {
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    let v = blocking(move || Ok(api::images::history(&d.engine, &name)?)).await?;
    ok_json(&json!(v))
}

/// `POST /images/{name}/tag?repo=&tag=`: 201.
pub async fn tag(ctx: Ctx, name: &str) -> Reply {
    let repo = ctx
        .query
        .get("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("tag: repo= is required"))?;
    let target = match ctx.query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_owned(),
    };
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    blocking(move || Ok(d.engine.tag(&name, &target)?)).await?;
    status(201)
}

/// `DELETE /images/{name}?force=`: `[{"Untagged"}, {"Deleted"}]`.
pub async fn remove(ctx: Ctx, name: &str) -> Reply {
    let force = ctx.query.bool("force", false)?;
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    let report = blocking(move || Ok(d.engine.image_remove(&name, force)?)).await?;
    ok_json(&json!(api::images::delete_report(&report)))
}

/// `POST /images/prune?filters=`: unused dangling images (every unused one with
/// `dangling=false`).
pub async fn prune(ctx: Ctx) -> Reply {
    let filters = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    filters.only(&["dangling", "label", "until"])?;
    let all = filters.bool("dangling")? == Some(false);
    let d = ctx.daemon.clone();
    let (reports, freed) = blocking(move || {
        let keep = |i: &capsa_images::ImageSummary| {
            let raw: Value = d
                .engine
                .store()
                .read_blob(&i.id)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            let labels = raw["config"]["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            filters.labels_match(&labels)
        };
        Ok(d.engine.image_prune(all, &keep)?)
    })
    .await?;
    let deleted: Vec<Value> = reports
        .iter()
        .flat_map(api::images::delete_report)
        .collect();
    ok_json(&json!({ "ImagesDeleted": deleted, "SpaceReclaimed": freed }))
}

/// Progress as dockerd's JSON lines: per layer `Pulling fs layer`, `Downloading` with
/// current/total (at most ten a second), `Download complete`, `Pull complete`; `Already exists`
/// for what the store has. The first line also says "started" to the handler.
struct JsonProgress {
    out: Mutex<StreamWriter>,
    started: Mutex<Option<oneshot::Sender<()>>>,
    last: Mutex<HashMap<Digest, Instant>>,
    push: bool,
}

impl JsonProgress {
    fn line(&self, v: Value) {
        if let Ok(mut s) = self.started.lock()
            && let Some(tx) = s.take()
        {
            let _ = tx.send(());
        }
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(format!("{v}\r\n").as_bytes());
        }
    }
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_owned()
}

/// dockerd's progress bar text.
fn bar(current: u64, total: u64) -> String {
    let width = 50;
    let filled = (current.min(total) * width).checked_div(total).unwrap_or(0) as usize;
    let mib = |b: u64| format!("{:.1}MB", b as f64 / 1e6);
    format!(
        "[{}>{}] {}/{}",
        "=".repeat(filled.saturating_sub(1)),
        " ".repeat(width as usize - filled.max(1)),
        mib(current),
        mib(total)
    )
}

impl Progress for JsonProgress {
    fn message(&self, _text: &str) {}

    fn blob_start(&self, digest: &Digest, size: u64, from: u64) {
        let id = short(digest);
        if self.push {
            self.line(json!({ "status": "Preparing", "progressDetail": {}, "id": id }));
        } else {
            self.line(json!({ "status": "Pulling fs layer", "progressDetail": {}, "id": id }));
        }
        let verb = if self.push { "Pushing" } else { "Downloading" };
        self.line(json!({
            "status": verb, "progressDetail": { "current": from, "total": size },
            "progress": bar(from, size), "id": id,
        }));
    }

    fn blob_progress(&self, digest: &Digest, done: u64) {
        let now = Instant::now();
        if let Ok(mut last) = self.last.lock() {
            if last
                .get(digest)
                .is_some_and(|t| now.duration_since(*t) < Duration::from_millis(100))
            {
                return;
            }
            last.insert(digest.clone(), now);
        }
        let verb = if self.push { "Pushing" } else { "Downloading" };
        self.line(json!({
            "status": verb, "progressDetail": { "current": done }, "id": short(digest),
        }));
    }

    fn blob_done(&self, digest: &Digest, outcome: BlobOutcome) {
        let status = match (outcome, self.push) {
            (BlobOutcome::Exists, false) => "Already exists",
            (BlobOutcome::Exists, true) => "Layer already exists",
            (BlobOutcome::Transferred, false) => "Download complete",
            (BlobOutcome::Transferred, true) => "Pushed",
            (BlobOutcome::Mounted, _) => "Mounted from another repository",
        };
        self.line(json!({ "status": status, "progressDetail": {}, "id": short(digest) }));
    }

    fn layer_unpacked(&self, digest: &Digest) {
        self.line(json!({ "status": "Pull complete", "progressDetail": {}, "id": short(digest) }));
    }
}

/// Runs `work` with a JSON progress stream: an error before the first progress line is the
/// answer's status; once lines flow, it ends the stream as an error line.
async fn progress_stream(
    push: bool,
    work: impl FnOnce(&JsonProgress) -> Result<Vec<Value>, ApiError> + Send + 'static,
) -> Reply {
    let (out, body): (StreamWriter, Body) = stream();
    let mut out = out;
    out.eager = true;
    let (started_tx, started_rx) = oneshot::channel();
    let (result_tx, result_rx) = oneshot::channel::<Result<(), ApiError>>();
    tokio::task::spawn_blocking(move || {
        let progress = JsonProgress {
            out: Mutex::new(out),
            started: Mutex::new(Some(started_tx)),
            last: Mutex::new(HashMap::new()),
            push,
        };
        match work(&progress) {
            Ok(lines) => {
                for l in lines {
                    progress.line(l);
                }
                let _ = result_tx.send(Ok(()));
            }
            Err(e) => {
                let started = progress.started.lock().map(|s| s.is_none()).unwrap_or(true);
                if started {
                    progress.line(json!({
                        "errorDetail": { "message": e.message }, "error": e.message,
                    }));
                    let _ = result_tx.send(Ok(()));
                } else {
                    let _ = result_tx.send(Err(e));
                }
            }
        }
    });
    // Whichever comes first: the first line (stream it) or the end (an error is a status).
    tokio::select! {
        _ = started_rx => {}
        r = result_rx => { r.map_err(|_| ApiError::new(500, "the pull stopped"))??; }
    }
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /images/create?fromImage=&tag=&platform=` (pull) or `?fromSrc=-&repo=&tag=` (import
/// of the body).
pub async fn create(ctx: Ctx, req: Request<Incoming>) -> Reply {
    let q = &ctx.query;
    if let Some(src) = q.get("fromSrc").filter(|s| !s.is_empty()) {
        if src != "-" {
            return Err(ApiError::bad_request(format!(
                "import from a URL ({src}) is not supported: send the tarball as the body (fromSrc=-)"
            )));
        }
        let reference = match (
            q.get("repo").filter(|r| !r.is_empty()),
            q.get("tag").filter(|t| !t.is_empty()),
        ) {
            (Some(r), Some(t)) => Some(format!("{r}:{t}")),
            (Some(r), None) => Some(r.to_owned()),
            _ => None,
        };
        let message = q.get("message").map(str::to_owned);
        let changes = q.all("changes");
        let mut input = body_reader(req.into_body());
        let d = ctx.daemon.clone();
        let id = blocking(move || {
            Ok(d.engine.import(
                &mut input,
                reference.as_deref(),
                message.as_deref(),
                &changes,
            )?)
        })
        .await?;
        return ok_json(&json!({ "status": id.to_string() }));
    }
    let image = q
        .get("fromImage")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("images/create: fromImage= or fromSrc= is required"))?
        .to_owned();
    let tag = q.get("tag").filter(|t| !t.is_empty()).map(str::to_owned);
    let reference = match &tag {
        Some(t) if t.starts_with("sha256:") => format!("{image}@{t}"),
        Some(t) if !image.contains('@') && !last_has_tag(&image) => format!("{image}:{t}"),
        _ if !image.contains('@') && !last_has_tag(&image) => format!("{image}:latest"),
        _ => image.clone(),
    };
    capsa_host::engine::Engine::check_reference(&reference)?;
    let platform = q
        .get("platform")
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let auth = registry_auth(req.headers())?;
    let d = ctx.daemon.clone();
    progress_stream(false, move |p| {
        let (repo, tagname) = split_for_status(&reference);
        p.line(json!({ "status": format!("Pulling from {repo}"), "id": tagname }));
        let options = d.engine.registry_options(None, auth);
        let report = d
            .engine
            .pull(&reference, platform.as_deref(), &options, p)
            .map_err(|e| {
                let status = e.http_status();
                let msg = if status == 404 || status == 401 {
                    format!(
                        "pull access denied for {repo}, repository does not exist or may require 'docker login': {e}"
                    )
                } else {
                    e.to_string()
                };
                ApiError::new(status, msg)
            })?;
        let newer = !report.fetched.is_empty() || !report.unpacked.is_empty();
        let name = report.name.clone().unwrap_or(reference.clone());
        Ok(vec![
            json!({ "status": format!("Digest: {}", report.manifest) }),
            json!({ "status": if newer {
                format!("Status: Downloaded newer image for {name}")
            } else {
                format!("Status: Image is up to date for {name}")
            }}),
        ])
    })
    .await
}

/// Whether the last path part of a reference carries a `:tag`.
fn last_has_tag(image: &str) -> bool {
    image
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

/// `busybox:latest` → (`library/busybox`, `latest`) as dockerd's status line shows it.
fn split_for_status(reference: &str) -> (String, String) {
    let (name, tag) = match reference.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (reference, "latest"),
    };
    let repo = if name.contains('/') {
        name.to_owned()
    } else {
        format!("library/{name}")
    };
    (repo, tag.to_owned())
}

/// `POST /images/{name}/push?tag=`.
pub async fn push(ctx: Ctx, name: &str, req: Request<Incoming>) -> Reply {
    let image = match ctx.query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_owned(),
    };
    let auth = registry_auth(req.headers())?;
    let d = ctx.daemon.clone();
    {
        let d = d.clone();
        let image = image.clone();
        blocking(move || {
            if !d.engine.has_image(&image)? {
                return Err(ApiError::not_found(format!(
                    "An image does not exist locally with the tag: {image}"
                )));
            }
            Ok(())
        })
        .await?;
    }
    progress_stream(true, move |p| {
        let (repo, tag) = split_for_status(&image);
        p.line(json!({ "status": format!("The push refers to repository [{repo}]") }));
        let options = d.engine.registry_options(None, auth);
        let report = d.engine.push(&image, None, &options, p)?;
        let mut lines = Vec::new();
        if let Some(digest) = &report.manifest {
            let size = std::fs::metadata(d.engine.store().blob_path(digest))
                .map(|m| m.len())
                .unwrap_or(0);
            lines.push(json!({ "status": format!("{tag}: digest: {digest} size: {size}") }));
            lines.push(json!({
                "progressDetail": {},
                "aux": { "Tag": tag, "Digest": digest.to_string(), "Size": size },
            }));
        }
        Ok(lines)
    })
    .await
}

/// `GET /images/get?names=…` and `GET /images/{name}/get`: a `docker save` tarball.
pub async fn save(ctx: Ctx, name: Option<String>) -> Reply {
    let names: Vec<String> = match name {
        Some(n) => vec![n],
        None => ctx.query.all("names"),
    };
    if names.is_empty() {
        return Err(ApiError::bad_request("images/get: names= is required"));
    }
    let d = ctx.daemon.clone();
    {
        let d = d.clone();
        let names = names.clone();
        blocking(move || {
            for n in &names {
                if !d.engine.has_image(n)? {
                    return Err(ApiError::not_found(format!("No such image: {n}")));
                }
            }
            Ok(())
        })
        .await?;
    }
    let (mut out, body) = stream();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Err(e) = d.engine.save(&refs, SaveFormat::Docker, &mut out) {
            log::warn!("save: {e}");
        }
        let _ = out.flush();
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(r)
}

/// `POST /images/load?quiet=`: `{"stream": "Loaded image: …\n"}` lines.
pub async fn load(ctx: Ctx, req: Request<Incoming>) -> Reply {
    let quiet = ctx.query.bool("quiet", false)?;
    let mut input = body_reader(req.into_body());
    let d = ctx.daemon.clone();
    let names = blocking(move || Ok(d.engine.load_stream(&mut input)?)).await?;
    let mut text = Vec::new();
    for n in names {
        let line = if n.starts_with("sha256:") {
            format!("Loaded image ID: {n}\n")
        } else {
            format!("Loaded image: {n}\n")
        };
        let v = json!({ "stream": line });
        text.extend_from_slice(v.to_string().as_bytes());
        text.extend_from_slice(b"\n");
    }
    let _ = quiet;
    let mut r = Response::new(crate::http::full(text));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`: 201 `{"Id"}`.
pub async fn commit(ctx: Ctx) -> Reply {
    let q = &ctx.query;
    let name = q
        .get("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("commit: container= is required"))?;
    let c = container(&ctx.daemon, name).await?;
    let reference = match (
        q.get("repo").filter(|r| !r.is_empty()),
        q.get("tag").filter(|t| !t.is_empty()),
    ) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r.to_owned()),
        _ => None,
    };
    let options = CommitOptions {
        reference,
        comment: q
            .get("comment")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        author: q.get("author").filter(|s| !s.is_empty()).map(str::to_owned),
        changes: q
            .all("changes")
            .into_iter()
            .flat_map(|c| c.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|c| !c.trim().is_empty())
            .collect(),
        pause: q.bool("pause", true)?,
    };
    let d = ctx.daemon.clone();
    let id = blocking(move || {
        let id = d.engine.commit(&c, &options)?;
        d.engine.emit_container_event(&c, "commit");
        Ok(id)
    })
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "Id": id.to_string() }),
    ))
}
