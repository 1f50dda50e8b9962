//! `/networks/*`: bridge networks. Each endpoint is a translation to one engine call; the
//! JSON shapes are the engine's (`engine::api::networks`).

use capsa_host::engine::api::{self, filters::Filters};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

use crate::http::{ApiError, Reply, blocking, json_response, ok_json, read_json, status};
use crate::router::Ctx;

/// `GET /networks?filters=`: a list of Docker's Network objects.
pub async fn list(ctx: Ctx) -> Reply {
    let filters = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    let d = ctx.daemon.clone();
    let list = blocking(move || Ok(api::networks::network_list(&d.engine, &filters)?)).await?;
    ok_json(&json!(list))
}

/// `POST /networks/create`: 201 with `{"Id", "Warning"}`; 409 for a name in use.
pub async fn create(ctx: Ctx, req: Request<Incoming>) -> Reply {
    let body = read_json(req.into_body()).await?;
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "network create: expected a JSON object",
        ));
    }
    let d = ctx.daemon.clone();
    let v = blocking(move || {
        let options = api::networks::network_create_options(&body)?;
        let n = d.engine.network_create(&options)?;
        Ok(json!({ "Id": n.id, "Warning": "" }))
    })
    .await?;
    Ok(json_response(StatusCode::CREATED, &v))
}

/// `GET /networks/{id}`.
pub async fn inspect(ctx: Ctx, name: &str) -> Reply {
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    let v = blocking(move || {
        let n = d.engine.network(&name)?;
        Ok(api::networks::network_json(&d.engine, &n))
    })
    .await?;
    ok_json(&v)
}

/// `DELETE /networks/{id}`: 204; 409 while a container is on it or for a predefined one.
pub async fn remove(ctx: Ctx, name: &str) -> Reply {
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    blocking(move || d.engine.network_remove(&name).map(drop).map_err(Into::into)).await?;
    status(204)
}

/// `POST /networks/prune?filters=`: `{"NetworksDeleted"}`.
pub async fn prune(ctx: Ctx) -> Reply {
    let filters = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    filters.only(&["label", "until"])?;
    let d = ctx.daemon.clone();
    let removed = blocking(move || {
        Ok(d.engine
            .network_prune(|n| !filters.labels_match(&n.labels))?)
    })
    .await?;
    ok_json(&json!({ "NetworksDeleted": removed }))
}

/// The `Container` field of a connect/disconnect body.
fn container_of(body: &Value) -> Result<String, ApiError> {
    body["Container"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_request("Container is required"))
}

/// `POST /networks/{id}/connect` with `{"Container", "EndpointConfig": {"Aliases",
/// "IPAMConfig": {"IPv4Address"}}}`: 200.
pub async fn connect(ctx: Ctx, name: &str, req: Request<Incoming>) -> Reply {
    let body = read_json(req.into_body()).await?;
    let container = container_of(&body)?;
    let aliases: Vec<String> = body["EndpointConfig"]["Aliases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let ip = body["EndpointConfig"]["IPAMConfig"]["IPv4Address"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    blocking(move || {
        let c = d.engine.container(&container)?;
        Ok(d.engine
            .network_connect(&c, &name, &aliases, ip.as_deref())?)
    })
    .await?;
    status(200)
}

/// `POST /networks/{id}/disconnect` with `{"Container", "Force"}`: 200.
pub async fn disconnect(ctx: Ctx, name: &str, req: Request<Incoming>) -> Reply {
    let body = read_json(req.into_body()).await?;
    let container = container_of(&body)?;
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    blocking(move || {
        let c = d.engine.container(&container)?;
        Ok(d.engine.network_disconnect(&c, &name)?)
    })
    .await?;
    status(200)
}
