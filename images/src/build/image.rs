//! One build step's image: the previous step's image (or nothing, for `FROM scratch`) with a new
//! config and, for `RUN`/`COPY`/`ADD`, one new tar layer on top. Every step makes one, as
//! Docker's classic builder does: the next step builds on it and the build cache points at it.
//! Each is recorded untagged with its parent, so `images` hides it while a child exists and
//! `rmi` of the final image takes the chain of untagged parents with it (Docker's model).

use std::io::Read;

use serde_json::{Value, json};

use crate::digest::Digest;
use crate::error::{Result, invalid};
use crate::import::rfc3339;
use crate::manifest::{Config, LayerKind, host_architecture, media};
use crate::store::{ImageId, ImageInfo, Store, Txn};
use crate::unpack::Compression;

/// What a step adds to its parent image.
pub struct StepImage<'a> {
    /// The parent image; `None` for the first step after `FROM scratch`.
    pub parent: Option<&'a ImageId>,
    /// The new layer (an uncompressed tar), or `None` for a metadata-only step
    /// (`empty_layer` in the history).
    pub layer: Option<&'a mut dyn Read>,
    /// The image config's `config` object after this step (Docker's keys: `Cmd`, `Env`, ...).
    pub config: Value,
    /// The history entry's `created_by` (`/bin/sh -c #(nop)  CMD ["x"]`, Docker's shape).
    pub created_by: String,
    /// `(os, architecture)` of an image built from scratch (`--platform`); a parent's are kept.
    pub platform: Option<(String, String)>,
}

impl Store {
    /// The config a derived image starts from: its parent's (refused for a wasm artifact), or
    /// an empty one for `platform` (default: linux on this machine's architecture).
    pub(crate) fn base_config(
        &self,
        parent: Option<&ImageInfo>,
        platform: Option<(String, String)>,
    ) -> Result<Value> {
        match parent {
            Some(info) => {
                if matches!(info.config, Config::WasmArtifact(_)) {
                    return Err(invalid(
                        format!("image {}", info.id),
                        "a wasm artifact cannot be a base image",
                    ));
                }
                serde_json::from_slice(&self.read_blob(&info.id)?)
                    .map_err(|e| invalid("base config", e.to_string()))
            }
            None => {
                let (os, arch) =
                    platform.unwrap_or_else(|| ("linux".into(), host_architecture().into()));
                Ok(json!({
                    "architecture": arch,
                    "os": os,
                    "config": {},
                    "rootfs": { "type": "layers", "diff_ids": [] },
                    "history": [],
                }))
            }
        }
    }

    /// Writes a step's image (config, manifest, layer) and records it, untagged, as a child of
    /// `step.parent`. Returns its id.
    pub fn add_step_image(&self, step: StepImage<'_>) -> Result<ImageId> {
        let parent = match step.parent {
            Some(id) => Some(self.inspect(&id.to_string())?),
            None => None,
        };
        let lock = self.lock()?;
        let mut txn = self.begin(&lock);
        let layer = match step.layer {
            Some(reader) => {
                let (blob, size) = txn.put_blob(reader, None, None)?;
                let meta = txn.unpack_layer(&blob, Compression::None, None)?;
                Some((blob, size, meta.diff_id))
            }
            None => None,
        };
        let now = rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
        let mut config = self.base_config(parent.as_ref(), step.platform.clone())?;
        let obj = config
            .as_object_mut()
            .ok_or_else(|| invalid("config", "not a JSON object"))?;
        obj.insert("created".into(), json!(now));
        obj.insert("config".into(), step.config);
        let mut entry = json!({ "created": now, "created_by": step.created_by });
        match &layer {
            Some((_, _, diff_id)) => {
                let diff_ids = obj
                    .entry("rootfs")
                    .or_insert_with(|| json!({ "type": "layers", "diff_ids": [] }))
                    .get_mut("diff_ids")
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| invalid("config", "rootfs.diff_ids is not an array"))?;
                diff_ids.push(json!(diff_id.to_string()));
            }
            None => entry["empty_layer"] = json!(true),
        }
        match obj.get_mut("history").and_then(Value::as_array_mut) {
            Some(history) => history.push(entry),
            None => {
                obj.insert("history".into(), json!([entry]));
            }
        }
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| invalid("config", e.to_string()))?;
        let new_layer = layer
            .as_ref()
            .map(|(blob, size, _)| (blob.clone(), *size, Compression::None));
        let (config_digest, manifest_digest) =
            write_image(&mut txn, parent.as_ref(), &config_bytes, new_layer)?;
        txn.commit()?;
        self.record_child(&lock, &config_digest, &manifest_digest, step.parent)?;
        Ok(config_digest)
    }

    /// The config's `config` object of image `id` (what the next step starts from).
    pub fn container_config(&self, id: &ImageId) -> Result<Value> {
        let bytes = self.read_blob(id)?;
        let config: Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid("image config", e.to_string()))?;
        Ok(config.get("config").cloned().unwrap_or_else(|| json!({})))
    }

    /// `(os, architecture)` of image `id`'s config.
    pub fn image_platform(&self, id: &ImageId) -> Result<(String, String)> {
        Ok(self.inspect(&id.to_string())?.platform())
    }
}

/// Stages a derived image's config and manifest (the parent's layers, then `layer`); returns
/// (config digest, manifest digest). The config must already name the new layer's diff_id.
pub(crate) fn write_image(
    txn: &mut Txn<'_>,
    parent: Option<&ImageInfo>,
    config_bytes: &[u8],
    layer: Option<(Digest, u64, Compression)>,
) -> Result<(ImageId, Digest)> {
    // Check that what we wrote is a config the store can read back.
    Config::parse(config_bytes, media::OCI_CONFIG, "new config")?;
    let config_digest = txn.put_bytes(config_bytes, None)?;
    let mut layers: Vec<Value> = Vec::new();
    if let Some(info) = parent {
        for l in &info.layers {
            layers.push(json!({ "mediaType": l.descriptor.media_type, "digest": l.descriptor.digest.to_string(), "size": l.descriptor.size }));
        }
    }
    if let Some((blob, size, compression)) = &layer {
        layers.push(json!({ "mediaType": LayerKind::Tar(*compression).oci_media_type(), "digest": blob.to_string(), "size": size }));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": { "mediaType": media::OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len() },
        "layers": layers,
    });
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| invalid("manifest", e.to_string()))?;
    let manifest_digest = txn.put_bytes(&manifest_bytes, None)?;
    Ok((config_digest, manifest_digest))
}
