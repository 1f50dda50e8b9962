//! Images in Docker's JSON shapes: the list entry (`GET /images/json`), the inspect object
//! (`GET /images/{name}/json`), history, and the delete report.

use serde_json::{Value, json};

use super::filters::Filters;
use super::time;
use crate::engine::Engine;
use crate::engine::error::{EngineError, Result};
use crate::engine::images::ImageDeleteReport;

/// `repo:tag` names and `repo@digest` names of an image, as Docker lists them.
fn tags_and_digests(names: &[String]) -> (Vec<String>, Vec<String>) {
    let (digests, tags): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|n| n.contains('@'));
    (tags, digests)
}

/// The image's labels.
fn image_labels(config: &Value) -> Value {
    match &config["config"]["Labels"] {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    }
}

/// One entry of `GET /images/json`.
pub fn summary(engine: &Engine, i: &capsa_images::ImageSummary, containers: i64) -> Value {
    let raw: Value = engine
        .store()
        .read_blob(&i.id)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let (tags, digests) = tags_and_digests(&i.names);
    json!({
        "Id": i.id.to_string(),
        "ParentId": "",
        "RepoTags": tags,
        "RepoDigests": digests,
        "Created": time::unix(i.created.as_deref().unwrap_or("")),
        "Size": i.size,
        "SharedSize": -1,
        "VirtualSize": i.size,
        "Labels": image_labels(&raw),
        "Containers": containers,
    })
}

/// The filters `GET /images/json` takes.
const LIST_FILTERS: &[&str] = &["dangling", "reference", "label", "before", "since"];

/// Whether `name` (`repo:tag`) matches a `reference` filter (`busybox`, `busybox:1.*`,
/// `localhost:5000/*`): Docker matches the pattern against the familiar name.
fn reference_matches(pattern: &str, name: &str) -> bool {
    let familiar = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    let (repo, _) = familiar
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .unwrap_or((familiar, ""));
    glob(pattern, familiar) || glob(pattern, repo)
}

/// `*` (not across `/`) and `?` wildcards.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && t[0] != b'/' && go(p, &t[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// `GET /images/json`: newest first; without `all`, every image (capsa keeps no
/// intermediate images to hide).
pub fn list(engine: &Engine, filters: &Filters, all: bool) -> Result<Vec<Value>> {
    filters.only(LIST_FILTERS)?;
    let mut images = engine.store().list_images(all)?;
    images.sort_by(|a, b| b.created.cmp(&a.created));
    let containers = engine.containers()?;
    let dangling = filters.bool("dangling")?;
    let created_of =
        |n: &str| -> Result<Option<String>> { Ok(engine.store().inspect(n)?.created()) };
    let before = filters
        .get("before")
        .and_then(|v| v.first())
        .map(|n| created_of(n))
        .transpose()?
        .flatten();
    let since = filters
        .get("since")
        .and_then(|v| v.first())
        .map(|n| created_of(n))
        .transpose()?
        .flatten();
    let mut out = Vec::new();
    for i in &images {
        if dangling.is_some_and(|d| d != i.names.is_empty()) {
            continue;
        }
        if let Some(patterns) = filters.get("reference")
            && !i
                .names
                .iter()
                .any(|n| patterns.iter().any(|p| reference_matches(p, n)))
        {
            continue;
        }
        let created = i.created.clone().unwrap_or_default();
        if before.as_ref().is_some_and(|b| created >= *b)
            || since.as_ref().is_some_and(|s| created <= *s)
        {
            continue;
        }
        let raw: Value = engine
            .store()
            .read_blob(&i.id)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let labels: std::collections::BTreeMap<String, String> = raw["config"]["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if !filters.labels_match(&labels) {
            continue;
        }
        let id = i.id.to_string();
        let used = containers.iter().filter(|c| c.image_id == id).count() as i64;
        out.push(summary(engine, i, used));
    }
    Ok(out)
}

/// `GET /images/{name}/json`.
pub fn inspect(engine: &Engine, name: &str) -> Result<Value> {
    let info = engine.store().inspect(name)?;
    let raw: Value = serde_json::from_slice(&engine.store().read_blob(&info.id)?).map_err(|e| {
        EngineError::Invalid {
            what: format!("config of {name}"),
            reason: e.to_string(),
        }
    })?;
    let (os, arch) = info.platform();
    let (tags, digests) = tags_and_digests(&info.names);
    let mut config = raw.get("config").cloned().unwrap_or_else(|| json!({}));
    for key in [
        "Env",
        "Cmd",
        "Entrypoint",
        "Labels",
        "Volumes",
        "ExposedPorts",
        "OnBuild",
    ] {
        if config.get(key).is_none() {
            config[key] = Value::Null;
        }
    }
    Ok(json!({
        "Id": info.id.to_string(),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Parent": "",
        "Comment": raw["history"].as_array().and_then(|h| h.last()).and_then(|h| h["comment"].as_str()).unwrap_or_default(),
        "Created": info.created().unwrap_or_default(),
        "DockerVersion": "",
        "Author": raw.get("author").and_then(Value::as_str).unwrap_or_default(),
        "Config": config,
        "Architecture": arch,
        "Variant": raw.get("variant"),
        "Os": os,
        "Size": info.size,
        "VirtualSize": info.size,
        "GraphDriver": { "Name": "overlay2", "Data": null },
        "RootFS": {
            "Type": "layers",
            "Layers": info.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        },
        "Metadata": { "LastTagTime": time::ZERO },
        "ManifestDigest": info.manifest_digest.to_string(),
        "Layers": info.layers.iter().map(|l| json!({
            "MediaType": l.descriptor.media_type,
            "Digest": l.descriptor.digest.to_string(),
            "DiffID": l.diff_id.as_ref().map(|d| d.to_string()),
            "Size": l.size,
        })).collect::<Vec<_>>(),
    }))
}

/// `GET /images/{name}/history`: newest first, the top entry with the image's id and names.
pub fn history(engine: &Engine, name: &str) -> Result<Vec<Value>> {
    let info = engine.store().inspect(name)?;
    // The images a build made on the way (the parent chain, while it is stored) name their own
    // history entries, as Docker shows them; the rest are `<missing>`.
    let records: std::collections::HashMap<String, capsa_images::ImageRecord> = engine
        .store()
        .records()?
        .into_iter()
        .map(|r| (r.id.hex().to_owned(), r))
        .collect();
    let mut owners: std::collections::HashMap<usize, (String, Vec<String>)> = Default::default();
    owners.insert(
        info.history.len(),
        (info.id.to_string(), info.names.clone()),
    );
    let mut next = records.get(info.id.hex()).and_then(|r| r.parent.clone());
    while let Some(parent) = next {
        let Ok(p) = engine.store().inspect(&parent.to_string()) else {
            break;
        };
        owners.insert(p.history.len(), (p.id.to_string(), p.names.clone()));
        next = records.get(p.id.hex()).and_then(|r| r.parent.clone());
    }
    let mut sizes = info.layers.iter().map(|l| l.size);
    let mut rows = Vec::new();
    for (n, h) in info.history.iter().enumerate() {
        let h = serde_json::to_value(h).unwrap_or(Value::Null);
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty { 0 } else { sizes.next().unwrap_or(0) };
        let owner = owners.get(&(n + 1));
        rows.push(json!({
            "Id": owner.map_or("<missing>".to_owned(), |(id, _)| id.clone()),
            "Created": time::unix(h["created"].as_str().unwrap_or_default()),
            "CreatedBy": h["created_by"].as_str().unwrap_or_default(),
            "Tags": owner.map_or(Value::Null, |(_, names)| json!(names)),
            "Size": size,
            "Comment": h["comment"].as_str().unwrap_or_default(),
        }));
    }
    rows.reverse();
    Ok(rows)
}

/// `DELETE /images/{name}`'s answer: `[{"Untagged": …}, {"Deleted": …}]`.
pub fn delete_report(report: &ImageDeleteReport) -> Vec<Value> {
    report
        .untagged
        .iter()
        .map(|u| json!({ "Untagged": u }))
        .chain(report.deleted.iter().map(|d| json!({ "Deleted": d })))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filters_match_familiar_names() {
        assert!(reference_matches(
            "busybox",
            "docker.io/library/busybox:latest"
        ));
        assert!(reference_matches(
            "busybox:lat*",
            "docker.io/library/busybox:latest"
        ));
        assert!(reference_matches(
            "localhost:5000/*",
            "localhost:5000/app:1"
        ));
        assert!(!reference_matches(
            "alpine",
            "docker.io/library/busybox:latest"
        ));
    }
}
