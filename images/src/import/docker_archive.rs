//! `docker save` tarballs (`manifest.json` + config + layer tars), as Docker, podman and skopeo
//! write them. There is no manifest blob in them: capsa writes an OCI manifest for each image,
//! with deterministic JSON, so loading the same archive twice gives the same image.

use std::io::Read;

use serde::Deserialize;

use super::Found;
use super::source::Source;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result, invalid};
use crate::manifest::{Config, media};
use crate::reference::Reference;
use crate::store::Txn;
use crate::unpack::Compression;

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The digest a member's name promises: `blobs/sha256/<hex>` (Docker 25+) or `<hex>.json`.
fn named_digest(member: &str) -> Option<Digest> {
    let base = member.rsplit('/').next()?;
    let hex = base.strip_suffix(".json").unwrap_or(base);
    if member.starts_with("blobs/sha256/") || base.ends_with(".json") {
        Digest::from_hex(hex).ok()
    } else {
        None
    }
}

pub(super) fn load(
    txn: &mut Txn<'_>,
    source: &dyn Source,
    manifest_json: &[u8],
) -> Result<Vec<Found>> {
    let what = format!("{}: manifest.json", source.name());
    let entries: Vec<Entry> =
        serde_json::from_slice(manifest_json).map_err(|e| invalid(&what, e.to_string()))?;
    let mut found = Vec::new();
    for entry in entries {
        let missing = |member: &str| {
            invalid(
                &what,
                format!("names {member:?}, which is not in the archive"),
            )
        };
        let mut config = Vec::new();
        source
            .open(&entry.config)?
            .ok_or_else(|| missing(&entry.config))?
            .read_to_end(&mut config)
            .ctx("read", format!("{}: {}", source.name(), entry.config))?;
        let config_digest = txn.put_bytes(&config, named_digest(&entry.config).as_ref())?;
        let config_what = format!("config {config_digest}");
        let diff_ids =
            Config::parse(&config, media::OCI_CONFIG, &config_what)?.diff_ids(&config_what)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(invalid(
                &config_what,
                format!(
                    "{} diff_ids for {} layers in manifest.json",
                    diff_ids.len(),
                    entry.layers.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (member, diff_id) in entry.layers.iter().zip(&diff_ids) {
            // An uncompressed layer is its own diff_id: a layer the store has needs no reading.
            let (digest, size, compression) =
                if txn.layer(diff_id).is_some() && txn.has_blob(diff_id) {
                    (diff_id.clone(), txn.blob_size(diff_id)?, Compression::None)
                } else {
                    let mut reader = source.open(member)?.ok_or_else(|| missing(member))?;
                    let expected = named_digest(member);
                    let (digest, size) = txn.put_blob(&mut reader, expected.as_ref(), None)?;
                    let mut head = [0u8; 4];
                    let n = txn
                        .open_blob(&digest)?
                        .read(&mut head)
                        .ctx("read", txn.store().blob_path(&digest))?;
                    let compression = Compression::sniff(&head[..n]);
                    txn.unpack_layer(&digest, compression, Some(diff_id))?;
                    (digest, size, compression)
                };
            layers.push(serde_json::json!({
                "mediaType": crate::manifest::LayerKind::Tar(compression).oci_media_type(),
                "digest": digest.to_string(),
                "size": size,
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": { "mediaType": media::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len() },
            "layers": layers,
        });
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| invalid("manifest", e.to_string()))?;
        let manifest = txn.put_bytes(&bytes, None)?;
        let names = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| match e {
                Error::InvalidReference { value, reason } => {
                    invalid(&what, format!("RepoTags {value:?}: {reason}"))
                }
                other => other,
            })?;
        found.push(Found {
            id: config_digest,
            manifest,
            names,
        });
    }
    Ok(found)
}
