//! `/_ping`, `/version`, `/info`, `/events`, `/system/df`, `/auth`, and the two networks that
//! exist until bridge networking (`none`, `host`).

use std::io::Write;
use std::sync::atomic::Ordering;

use capsa_host::engine::api::filters::Filters;
use capsa_host::engine::api::{self, system::InfoExtras};
use capsa_host::engine::{EventFilter, parse_time};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response};
use serde_json::json;

use crate::http::{ApiError, Reply, blocking, full, ok_json, read_json, stream};
use crate::router::Ctx;

/// `GET /_ping` (`OK`) and `HEAD /_ping`.
pub fn ping(method: &Method) -> Reply {
    let mut r = Response::new(if method == Method::HEAD {
        full("")
    } else {
        full("OK")
    });
    let h = r.headers_mut();
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    h.insert(
        HeaderName::from_static("content-type"),
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // The classic builder (1), when it exists; no BuildKit.
    h.insert(
        HeaderName::from_static("builder-version"),
        HeaderValue::from_static("1"),
    );
    h.insert(
        HeaderName::from_static("swarm"),
        HeaderValue::from_static("inactive"),
    );
    Ok(r)
}

pub fn version() -> Reply {
    ok_json(&api::system::version())
}

pub async fn info(ctx: Ctx) -> Reply {
    let d = ctx.daemon.clone();
    let v = blocking(move || {
        let extras = InfoExtras {
            event_listeners: d.event_listeners.load(Ordering::Relaxed),
            debug: d.debug,
        };
        Ok(api::system::info(&d.engine, &extras)?)
    })
    .await?;
    ok_json(&v)
}

pub async fn df(ctx: Ctx) -> Reply {
    let d = ctx.daemon.clone();
    let v = blocking(move || Ok(api::system::df(&d.engine)?)).await?;
    ok_json(&v)
}

/// `GET /events?since=&until=&filters=`: the event log from `since` (or now), one JSON object
/// per line, until `until` or the client goes away.
pub async fn events(ctx: Ctx) -> Reply {
    let since = ctx
        .query
        .get("since")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()?;
    let until = ctx
        .query
        .get("until")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()?;
    let filters = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    filters.only(&[
        "container",
        "event",
        "image",
        "label",
        "type",
        "volume",
        "network",
        "daemon",
        "scope",
        "plugin",
        "node",
        "service",
        "secret",
        "config",
    ])?;
    let filter = EventFilter {
        filters: filters.0.clone(),
    };
    let d = ctx.daemon.clone();
    let mut reader = d.engine.event_reader(since)?;
    let (mut out, body) = stream();
    out.eager = true;
    d.event_listeners.fetch_add(1, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || {
        loop {
            if out.closed() {
                break;
            }
            // What the log holds is replayed first; `until` in the past ends the stream at the
            // end of the replay.
            let next = match reader.try_next() {
                Ok(Some(e)) => Some(e),
                Ok(None) => {
                    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
                    if until.is_some_and(|u| now >= u) {
                        break;
                    }
                    match reader.next(Some(std::time::Duration::from_millis(500))) {
                        Ok(e) => e,
                        Err(e) => {
                            log::warn!("events: {e}");
                            break;
                        }
                    }
                }
                Err(e) => {
                    log::warn!("events: {e}");
                    break;
                }
            };
            let Some(e) = next else { continue };
            if until.is_some_and(|u| e.time_nano >= u) {
                break;
            }
            // One chunk per event, newline included: clients split the stream on chunks.
            if filter.accepts(&e)
                && let Ok(mut line) = serde_json::to_vec(&e)
                && {
                    line.push(b'\n');
                    out.write_all(&line).is_err()
                }
            {
                break;
            }
        }
        d.event_listeners.fetch_sub(1, Ordering::Relaxed);
    });
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /auth`: checks the credentials against the registry (the client keeps them).
pub async fn auth(ctx: Ctx, req: Request<Incoming>) -> Reply {
    let body = read_json(req.into_body()).await?;
    let user = body["username"].as_str().unwrap_or_default().to_owned();
    let password = body["password"].as_str().unwrap_or_default().to_owned();
    let server = body["serveraddress"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("https://index.docker.io/v1/")
        .to_owned();
    if user.is_empty() {
        return Err(ApiError::bad_request("auth: username is empty"));
    }
    let d = ctx.daemon.clone();
    let identity_token = blocking(move || {
        let options = d.engine.registry_options(None, None);
        d.engine
            .check_login(&server, &user, &password, &options)
            .map_err(|e| match e.http_status() {
                401 => ApiError::new(401, e.to_string()),
                500 => ApiError::new(500, e.to_string()),
                s => ApiError::new(s, e.to_string()),
            })
    })
    .await?;
    ok_json(&json!({
        "Status": "Login Succeeded",
        "IdentityToken": identity_token.unwrap_or_default(),
    }))
}
