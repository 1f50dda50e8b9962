//! `/volumes/*`: named volumes of the local driver.

use std::collections::BTreeMap;

use capsa_host::engine::VolumeOptions;
use capsa_host::engine::api::{self, filters::Filters};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use crate::http::{ApiError, Reply, blocking, json_response, ok_json, read_json, status};
use crate::router::Ctx;

/// `GET /volumes?filters=`: `{"Volumes", "Warnings"}`.
pub async fn list(ctx: Ctx) -> Reply {
    let filters = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    filters.only(&["name", "label", "dangling", "driver"])?;
    let dangling = filters.bool("dangling")?;
    let d = ctx.daemon.clone();
    let list = blocking(move || {
        let mut out = Vec::new();
        for v in d.engine.volumes()? {
            if filters
                .get("name")
                .is_some_and(|n| !n.iter().any(|w| v.name.contains(w.as_str())))
                || filters
                    .get("driver")
                    .is_some_and(|dr| !dr.contains(&v.driver))
                || !filters.labels_match(&v.labels)
            {
                continue;
            }
            if let Some(want) = dangling
                && want != d.engine.volume_users(&v.name)?.is_empty()
            {
                continue;
            }
            out.push(api::system::volume_json(&d.engine, &v));
        }
        Ok(out)
    })
    .await?;
    ok_json(&json!({ "Volumes": list, "Warnings": null }))
}

/// `POST /volumes/create` with `{"Name", "Driver", "DriverOpts", "Labels"}`: 201.
pub async fn create(ctx: Ctx, req: Request<Incoming>) -> Reply {
    let body = read_json(req.into_body()).await?;
    if !(body.is_object() || body.is_null()) {
        return Err(ApiError::bad_request(
            "volume create: expected a JSON object",
        ));
    }
    let map = |v: &serde_json::Value| -> Result<BTreeMap<String, String>, ApiError> {
        match v {
            serde_json::Value::Null => Ok(BTreeMap::new()),
            serde_json::Value::Object(m) => m
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| (k.clone(), s.to_owned()))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!("volume create: {k}: expected a string"))
                        })
                })
                .collect(),
            _ => Err(ApiError::bad_request(
                "volume create: expected an object of strings",
            )),
        }
    };
    let str_field = |k: &str| -> Result<String, ApiError> {
        match &body[k] {
            serde_json::Value::Null => Ok(String::new()),
            serde_json::Value::String(s) => Ok(s.clone()),
            _ => Err(ApiError::bad_request(format!(
                "volume create: {k}: expected a string"
            ))),
        }
    };
    let options = VolumeOptions {
        name: str_field("Name")?,
        driver: str_field("Driver")?,
        labels: map(&body["Labels"])?,
        driver_opts: map(&body["DriverOpts"])?,
    };
    let d = ctx.daemon.clone();
    let v = blocking(move || {
        let v = d.engine.volume_create(&options)?;
        Ok(api::system::volume_json(&d.engine, &v))
    })
    .await?;
    Ok(json_response(StatusCode::CREATED, &v))
}

/// `GET /volumes/{name}`.
pub async fn inspect(ctx: Ctx, name: &str) -> Reply {
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    let v = blocking(move || {
        let v = d.engine.volume(&name)?;
        Ok(api::system::volume_json(&d.engine, &v))
    })
    .await?;
    ok_json(&v)
}

/// `DELETE /volumes/{name}?force=`: 204; 409 while a container uses it.
pub async fn remove(ctx: Ctx, name: &str) -> Reply {
    let force = ctx.query.bool("force", false)?;
    let d = ctx.daemon.clone();
    let name = name.to_owned();
    blocking(move || Ok(d.engine.volume_remove(&name, force)?)).await?;
    status(204)
}

/// `POST /volumes/prune?filters=`: unused anonymous volumes (all unused with `all=true`).
pub async fn prune(ctx: Ctx) -> Reply {
    let filters = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    filters.only(&["label", "all"])?;
    let all = filters.bool("all")?.unwrap_or(false) || !ctx.at_least(1, 42);
    let d = ctx.daemon.clone();
    let (removed, freed) = blocking(move || {
        Ok(d.engine
            .volume_prune(all, &|v| filters.labels_match(&v.labels))?)
    })
    .await?;
    ok_json(&json!({ "VolumesDeleted": removed, "SpaceReclaimed": freed }))
}
