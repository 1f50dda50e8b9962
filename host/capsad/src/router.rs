//! Versions and routes: strips the `/v1.NN` prefix (1.24 to [`API_VERSION`]; none means the
//! newest), sends each (method, path) to its handler, and puts dockerd's headers on every
//! answer. Unknown routes are 404 with Docker's message; swarm routes are 503, as on a dockerd
//! that is not a swarm node.

use std::convert::Infallible;
use std::sync::Arc;

use capsa_host::engine::api::{API_VERSION, MIN_API_VERSION, VERSION};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response};

use crate::daemon::Daemon;
use crate::handlers::{build, containers, exec, images, networks, system, volumes};
use crate::http::{ApiError, Body, Query, Reply};

/// A parsed `major.minor` API version.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The request's context: the daemon, the negotiated version, the query.
pub struct Ctx {
    pub daemon: Arc<Daemon>,
    pub version: (u32, u32),
    pub query: Query,
}

impl Ctx {
    /// Whether the client speaks at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version >= (major, minor)
    }
}

/// Every request comes here.
pub async fn handle(
    daemon: Arc<Daemon>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    log::debug!("{method} {}", req.uri());
    let mut response = match route(daemon, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                log::warn!("{method} {raw_path}: {}", e.message);
            } else {
                log::debug!("{method} {raw_path}: {} {}", e.status, e.message);
            }
            e.into_response()
        }
    };
    let headers = response.headers_mut();
    for (k, v) in [
        ("api-version", API_VERSION.to_owned()),
        ("docker-experimental", "false".to_owned()),
        ("ostype", "linux".to_owned()),
        ("server", format!("Docker/capsa-{VERSION} (linux)")),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(HeaderName::from_static(k), v);
        }
    }
    Ok(response)
}

async fn route(daemon: Arc<Daemon>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let (version, rest) = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            let (v, tail) = rest.split_once('/').map_or((rest, ""), |(v, t)| (v, t));
            let parsed = parse_version(v)
                .ok_or_else(|| ApiError::bad_request(format!("invalid API version {v:?}")))?;
            let (max, min) = (
                parse_version(API_VERSION).unwrap_or((1, 47)),
                parse_version(MIN_API_VERSION).unwrap_or((1, 24)),
            );
            if parsed > max {
                return Err(ApiError::bad_request(format!(
                    "client version {v} is too new. Maximum supported API version is {API_VERSION}"
                )));
            }
            if parsed < min {
                return Err(ApiError::bad_request(format!(
                    "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                )));
            }
            (parsed, format!("/{tail}"))
        }
        _ => (parse_version(API_VERSION).unwrap_or((1, 47)), path.clone()),
    };
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let ctx = Ctx {
        daemon,
        version,
        query: Query::parse(req.uri().query()),
    };
    let method = req.method().clone();
    use Method as M;
    match (&method, seg.as_slice()) {
        // System.
        (&M::GET | &M::HEAD, ["_ping"]) => system::ping(&method),
        (&M::GET, ["version"]) => system::version(),
        (&M::GET, ["info"]) => system::info(ctx).await,
        (&M::GET, ["events"]) => system::events(ctx).await,
        (&M::GET, ["system", "df"]) => system::df(ctx).await,
        (&M::POST, ["auth"]) => system::auth(ctx, req).await,
        (&M::GET, ["plugins"]) => crate::http::ok_json(&serde_json::json!([])),
        (
            _,
            ["swarm", ..]
            | ["nodes", ..]
            | ["services", ..]
            | ["tasks", ..]
            | ["secrets", ..]
            | ["configs", ..],
        ) => Err(ApiError::new(
            503,
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
        )),

        // Containers.
        (&M::GET, ["containers", "json"]) => containers::list(ctx).await,
        (&M::POST, ["containers", "create"]) => containers::create(ctx, req).await,
        (&M::POST, ["containers", "prune"]) => containers::prune(ctx).await,
        (&M::GET, ["containers", id, "json"]) => containers::inspect(ctx, id).await,
        (&M::GET, ["containers", id, "top"]) => containers::top(ctx, id).await,
        (&M::GET, ["containers", id, "logs"]) => containers::logs(ctx, id).await,
        (&M::GET, ["containers", id, "changes"]) => containers::changes(ctx, id).await,
        (&M::GET, ["containers", id, "export"]) => containers::export(ctx, id).await,
        (&M::GET, ["containers", id, "stats"]) => containers::stats(ctx, id).await,
        (&M::POST, ["containers", id, "resize"]) => containers::resize(ctx, id).await,
        (&M::POST, ["containers", id, "start"]) => containers::start(ctx, id).await,
        (&M::POST, ["containers", id, "stop"]) => containers::stop(ctx, id).await,
        (&M::POST, ["containers", id, "restart"]) => containers::restart(ctx, id).await,
        (&M::POST, ["containers", id, "kill"]) => containers::kill(ctx, id).await,
        (&M::POST, ["containers", id, "update"]) => containers::update(ctx, id, req).await,
        (&M::POST, ["containers", id, "rename"]) => containers::rename(ctx, id).await,
        (&M::POST, ["containers", id, "pause"]) => containers::pause(ctx, id, true).await,
        (&M::POST, ["containers", id, "unpause"]) => containers::pause(ctx, id, false).await,
        (&M::POST, ["containers", id, "attach"]) => containers::attach(ctx, id, req).await,
        (&M::POST, ["containers", id, "wait"]) => containers::wait(ctx, id).await,
        (&M::DELETE, ["containers", id]) => containers::remove(ctx, id).await,
        (&M::HEAD, ["containers", id, "archive"]) => containers::archive_head(ctx, id).await,
        (&M::GET, ["containers", id, "archive"]) => containers::archive_get(ctx, id).await,
        (&M::PUT, ["containers", id, "archive"]) => containers::archive_put(ctx, id, req).await,
        (&M::POST, ["containers", id, "exec"]) => exec::create(ctx, id, req).await,
        (&M::POST, ["commit"]) => images::commit(ctx).await,
        (&M::POST, ["build"]) => build::build(ctx, req).await,
        (&M::POST, ["build", "prune"]) => build::prune(ctx).await,

        // Exec.
        (&M::POST, ["exec", id, "start"]) => exec::start(ctx, id, req).await,
        (&M::POST, ["exec", id, "resize"]) => exec::resize(ctx, id).await,
        (&M::GET, ["exec", id, "json"]) => exec::inspect(ctx, id).await,

        // Images (names span segments: `localhost:5000/app/json`).
        (&M::GET, ["images", "json"]) => images::list(ctx).await,
        (&M::POST, ["images", "create"]) => images::create(ctx, req).await,
        (&M::POST, ["images", "load"]) => images::load(ctx, req).await,
        (&M::GET, ["images", "get"]) => images::save(ctx, None).await,
        (&M::POST, ["images", "prune"]) => images::prune(ctx).await,
        (&M::GET, ["images", "search"]) => Err(ApiError::new(
            501,
            "image search is not supported: capsa does not query Docker Hub's index",
        )),
        (&M::GET, ["images", name @ .., "json"]) if !name.is_empty() => {
            images::inspect(ctx, &name.join("/")).await
        }
        (&M::GET, ["images", name @ .., "history"]) if !name.is_empty() => {
            images::history(ctx, &name.join("/")).await
        }
        (&M::GET, ["images", name @ .., "get"]) if !name.is_empty() => {
            images::save(ctx, Some(name.join("/"))).await
        }
        (&M::POST, ["images", name @ .., "push"]) if !name.is_empty() => {
            images::push(ctx, &name.join("/"), req).await
        }
        (&M::POST, ["images", name @ .., "tag"]) if !name.is_empty() => {
            images::tag(ctx, &name.join("/")).await
        }
        (&M::DELETE, ["images", name @ ..]) if !name.is_empty() => {
            images::remove(ctx, &name.join("/")).await
        }
        (&M::GET, ["distribution", ..]) => {
            Err(ApiError::new(501, "distribution inspect is not supported"))
        }

        // Volumes.
        (&M::GET, ["volumes"]) => volumes::list(ctx).await,
        (&M::POST, ["volumes", "create"]) => volumes::create(ctx, req).await,
        (&M::POST, ["volumes", "prune"]) => volumes::prune(ctx).await,
        (&M::GET, ["volumes", name]) => volumes::inspect(ctx, name).await,
        (&M::DELETE, ["volumes", name]) => volumes::remove(ctx, name).await,

        // Networks.
        (&M::GET, ["networks"]) => networks::list(ctx).await,
        (&M::POST, ["networks", "create"]) => networks::create(ctx, req).await,
        (&M::POST, ["networks", "prune"]) => networks::prune(ctx).await,
        (&M::GET, ["networks", name]) => networks::inspect(ctx, name).await,
        (&M::DELETE, ["networks", name]) => networks::remove(ctx, name).await,
        (&M::POST, ["networks", name, "connect"]) => networks::connect(ctx, name, req).await,
        (&M::POST, ["networks", name, "disconnect"]) => networks::disconnect(ctx, name, req).await,

        (_, ["build"] | ["session"] | ["build", ..]) => Err(ApiError::new(
            501,
            "image builds are not supported yet (capsa build is a later issue)",
        )),
        _ => Err(ApiError::not_found(format!(
            "page not found: {method} {rest}"
        ))),
    }
}
