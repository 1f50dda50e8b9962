//! `POST /build` and `POST /build/prune`: Docker's classic builder (`version=1`, what the
//! docker CLI uses when the daemon offers no BuildKit). The body is the context as a tar; the
//! answer streams JSON lines as dockerd's: `{"stream": …}` for the log, `{"aux": {"ID": …}}`
//! for the image, `{"error", "errorDetail": {"code", "message"}}` when a step fails.

use std::collections::BTreeMap;
use std::io::Write;

use hyper::Request;
use hyper::Response;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use capsa_host::engine::EngineError;
use capsa_host::engine::build::{BuildOptions, BuildOutput};

use crate::http::{ApiError, Reply, StreamWriter, blocking, body_reader, ok_json, stream};
use crate::router::Ctx;

/// A JSON object of strings from the query (`buildargs`, `labels`); `null` values are left out.
fn string_map(ctx: &Ctx, key: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(text) = ctx.query.get(key).filter(|t| !t.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: BTreeMap<String, Value> = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}")))?;
    Ok(v.into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Null => None,
            other => Some((k, other.to_string())),
        })
        .collect())
}

/// The build's log as dockerd streams it.
struct JsonLog {
    out: StreamWriter,
    quiet: bool,
}

impl JsonLog {
    fn line(&mut self, v: Value) {
        let mut bytes = v.to_string().into_bytes();
        bytes.extend_from_slice(b"\r\n");
        let _ = self.out.write_all(&bytes);
    }
}

impl BuildOutput for JsonLog {
    fn stream(&mut self, text: &str) {
        if !self.quiet {
            self.line(json!({ "stream": text }));
        }
    }

    /// A client that went away (the docker CLI's Ctrl-C) cancels the build, as with dockerd.
    fn cancelled(&self) -> bool {
        self.out.closed()
    }
}

/// `POST /build?t=&dockerfile=&buildargs=&nocache=&pull=&target=&labels=&platform=&networkmode=&q=`.
pub async fn build(ctx: Ctx, req: Request<Incoming>) -> Reply {
    let q = &ctx.query;
    if q.get("version") == Some("2") {
        return Err(ApiError::bad_request(
            "BuildKit is not supported: capsad builds with the classic builder (version=1)",
        ));
    }
    if let Some(remote) = q.get("remote").filter(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "a remote build context ({remote}) is not supported: send the context as the body"
        )));
    }
    let options = BuildOptions {
        dockerfile: q
            .get("dockerfile")
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from),
        tags: q.all("t").into_iter().filter(|t| !t.is_empty()).collect(),
        build_args: string_map(&ctx, "buildargs")?,
        labels: string_map(&ctx, "labels")?,
        target: q.get("target").filter(|t| !t.is_empty()).map(str::to_owned),
        no_cache: q.bool("nocache", false)?,
        pull: q
            .bool("pull", false)
            .unwrap_or(!q.get("pull").unwrap_or("").is_empty()),
        platform: q
            .get("platform")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        network: q
            .get("networkmode")
            .filter(|n| !n.is_empty() && *n != "default")
            .map(str::to_owned),
        ..BuildOptions::default()
    };
    let quiet = q.bool("q", false)?;
    let (mut out, body) = stream();
    out.eager = true;
    let mut input = body_reader(req.into_body());
    let d = ctx.daemon.clone();
    tokio::task::spawn_blocking(move || {
        let mut log = JsonLog { out, quiet };
        match d.engine.build_from_tar(&mut input, &options, &mut log) {
            Ok(id) => {
                log.line(json!({ "aux": { "ID": id.to_string() } }));
                if quiet {
                    log.line(json!({ "stream": format!("{id}\n") }));
                }
            }
            Err(e) => {
                let code = match &e {
                    EngineError::BuildStep { code, .. } => *code,
                    _ => 1,
                };
                let message = e.to_string();
                log.line(json!({
                    "errorDetail": { "code": code, "message": message },
                    "error": message,
                }));
            }
        }
        let _ = log.out.flush();
    });
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `POST /build/prune`: empties the build cache.
pub async fn prune(ctx: Ctx) -> Reply {
    let d = ctx.daemon.clone();
    let (entries, freed) = blocking(move || Ok(d.engine.builder_prune()?)).await?;
    ok_json(&json!({ "CachesDeleted": entries, "SpaceReclaimed": freed }))
}
