//! Image records: `images.json` maps an image id (its config digest, as Docker shows it) to its
//! manifest and its names. It is replaced atomically, and only after the content it names is
//! committed, so a record never points at missing content. Also what `images`, `inspect`,
//! `tag` and `rmi` read and change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::History;
use serde::{Deserialize, Serialize};

use super::{Lock, Store, gc, write_atomic};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result, invalid};
use crate::manifest::{Config, Descriptor, LayerKind, Manifest, diff_ids_for_layers};
use crate::reference::Reference;

/// An image's id: the digest of its config, as `docker images` shows it.
pub type ImageId = Digest;

/// One image in `images.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// The config digest.
    pub id: ImageId,
    /// The manifest digest (the image as it was loaded).
    pub manifest: Digest,
    /// Its names (`repository:tag`, familiar form); empty for a dangling image.
    pub names: Vec<String>,
    /// When it entered the store (seconds since the epoch).
    pub added: u64,
    /// The image a build step made this one from (Docker's `Parent`): an untagged image that
    /// is some image's parent is an intermediate one, hidden from `images` and removed with
    /// its last child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ImageId>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Records {
    images: BTreeMap<String, ImageRecord>,
}

/// A line of `capsa images`.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The image id.
    pub id: ImageId,
    /// Its names.
    pub names: Vec<String>,
    /// The config's `created` (RFC 3339), if any.
    pub created: Option<String>,
    /// Uncompressed size of its layers plus raw wasm blobs.
    pub size: u64,
}

/// One layer as `inspect` shows it.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// The layer blob as the manifest describes it.
    pub descriptor: Descriptor,
    /// Tar (with compression) or raw wasm.
    pub kind: LayerKind,
    /// The uncompressed tar's digest (tar layers only).
    pub diff_id: Option<Digest>,
    /// The unpacked directory (tar layers) or the blob file (wasm layers).
    pub path: PathBuf,
    /// Uncompressed size (tar) or blob size (wasm).
    pub size: u64,
}

/// What `image inspect` shows.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The image id (config digest).
    pub id: ImageId,
    /// Its names.
    pub names: Vec<String>,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The config (Entrypoint, Cmd, Env, ... for the engine).
    pub config: Config,
    /// RootFS.Layers: the diff_ids, lowest first.
    pub diff_ids: Vec<Digest>,
    /// The layers, lowest first.
    pub layers: Vec<LayerInfo>,
    /// The config's history.
    pub history: Vec<History>,
    /// Total size, as in [`ImageSummary::size`].
    pub size: u64,
    /// When it entered the store.
    pub added: u64,
}

impl ImageInfo {
    /// The config's `created`, if any.
    pub fn created(&self) -> Option<String> {
        match &self.config {
            Config::Image(c) => c.created().clone(),
            Config::WasmArtifact(v) => v.get("created").and_then(|c| c.as_str()).map(str::to_owned),
        }
    }

    /// `(os, architecture)` from the config.
    pub fn platform(&self) -> (String, String) {
        match &self.config {
            Config::Image(c) => (c.os().to_string(), c.architecture().to_string()),
            Config::WasmArtifact(v) => {
                let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
                (field("os"), field("architecture"))
            }
        }
    }
}

/// Outcome of [`Store::remove`].
#[derive(Debug, Clone, Default)]
pub struct RemoveReport {
    /// Names removed.
    pub untagged: Vec<String>,
    /// The image whose record was deleted (its last name went, or it was named by id).
    pub deleted: Option<ImageId>,
    /// Untagged parents (a build's intermediate images) deleted with it, nearest first.
    pub parents: Vec<ImageId>,
    /// Content freed afterwards.
    pub gc: gc::GcReport,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    fn records_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    fn read_records(&self) -> Result<Records> {
        let path = self.records_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| invalid(path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::default()),
            Err(e) => Err(e).ctx("read", &path),
        }
    }

    fn write_records(&self, _lock: &Lock, records: &Records) -> Result<()> {
        let json = serde_json::to_vec_pretty(records)
            .map_err(|e| invalid("images.json", e.to_string()))?;
        write_atomic(self, &self.records_path(), &json)
    }

    /// Every image record (no lock: the file is replaced atomically).
    pub fn records(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.read_records()?.images.into_values().collect())
    }

    /// Adds or updates an image's record, moving `names` to it from any other image. The
    /// content it names must be committed already.
    pub(crate) fn record_image(
        &self,
        lock: &Lock,
        id: &ImageId,
        manifest: &Digest,
        names: &[Reference],
    ) -> Result<()> {
        let mut records = self.read_records()?;
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        for record in records.images.values_mut() {
            record.names.retain(|n| !names.contains(n));
        }
        let record = records
            .images
            .entry(id.hex().to_owned())
            .or_insert_with(|| ImageRecord {
                id: id.clone(),
                manifest: manifest.clone(),
                names: Vec::new(),
                added: now(),
                parent: None,
            });
        record.manifest = manifest.clone();
        for name in names {
            if !record.names.contains(&name) {
                record.names.push(name);
            }
        }
        self.write_records(lock, &records)
    }

    /// Records a build step's image, untagged, as `parent`'s child.
    pub(crate) fn record_child(
        &self,
        lock: &Lock,
        id: &ImageId,
        manifest: &Digest,
        parent: Option<&ImageId>,
    ) -> Result<()> {
        let mut records = self.read_records()?;
        let record = records
            .images
            .entry(id.hex().to_owned())
            .or_insert_with(|| ImageRecord {
                id: id.clone(),
                manifest: manifest.clone(),
                names: Vec::new(),
                added: now(),
                parent: parent.cloned(),
            });
        record.manifest = manifest.clone();
        self.write_records(lock, &records)
    }

    fn find(&self, records: &Records, name_or_id: &str) -> Result<(ImageId, Option<Reference>)> {
        let not_found = || Error::ImageNotFound(name_or_id.to_owned());
        if let Ok(d) = Digest::parse(name_or_id) {
            return records
                .images
                .get(d.hex())
                .map(|r| (r.id.clone(), None))
                .ok_or_else(not_found);
        }
        if let Ok(reference) = Reference::parse(name_or_id) {
            let name = reference.to_string();
            if let Some(r) = records.images.values().find(|r| r.names.contains(&name)) {
                return Ok((r.id.clone(), Some(reference)));
            }
        }
        if !name_or_id.is_empty() && name_or_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<_> = records
                .images
                .values()
                .filter(|r| r.id.hex().starts_with(name_or_id))
                .collect();
            return match matches.as_slice() {
                [one] => Ok((one.id.clone(), None)),
                [] => Err(not_found()),
                _ => Err(Error::AmbiguousId(name_or_id.to_owned())),
            };
        }
        Err(not_found())
    }

    /// The id of the image a name (`busybox`, `repo:tag`) or id (`sha256:…`, a unique hex
    /// prefix) names.
    pub fn resolve(&self, name_or_id: &str) -> Result<ImageId> {
        Ok(self.find(&self.read_records()?, name_or_id)?.0)
    }

    /// `docker image inspect`: manifest, config, layers with their diff_ids and paths, history.
    pub fn inspect(&self, name_or_id: &str) -> Result<ImageInfo> {
        let records = self.read_records()?;
        let (id, _) = self.find(&records, name_or_id)?;
        let record = records
            .images
            .get(id.hex())
            .ok_or_else(|| Error::ImageNotFound(name_or_id.to_owned()))?;
        self.info(record)
    }

    fn info(&self, record: &ImageRecord) -> Result<ImageInfo> {
        let what = format!("manifest {}", record.manifest);
        let manifest = Manifest::parse(&self.read_blob(&record.manifest)?, &what)?;
        let config_what = format!("config {}", manifest.config.digest);
        let config = Config::parse(
            &self.read_blob(&manifest.config.digest)?,
            &manifest.config.media_type,
            &config_what,
        )?;
        let diff_ids = config.diff_ids(&config_what)?;
        let per_layer = diff_ids_for_layers(&manifest, &diff_ids, &config_what)?;
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(per_layer) {
            let (path, size) = match &diff_id {
                Some(d) => {
                    let meta = self.layer_meta(d)?;
                    (super::layers::dir(&self.root, d).join("diff"), meta.size)
                }
                None => (
                    self.blob_path(&layer.descriptor.digest),
                    layer.descriptor.size,
                ),
            };
            layers.push(LayerInfo {
                descriptor: layer.descriptor.clone(),
                kind: layer.kind,
                diff_id,
                path,
                size,
            });
        }
        let history = match &config {
            Config::Image(c) => c.history().clone().unwrap_or_default(),
            Config::WasmArtifact(_) => Vec::new(),
        };
        Ok(ImageInfo {
            id: record.id.clone(),
            names: record.names.clone(),
            manifest_digest: record.manifest.clone(),
            size: layers.iter().map(|l| l.size).sum(),
            manifest,
            config,
            diff_ids,
            layers,
            history,
            added: record.added,
        })
    }

    /// `docker images`: one summary per image.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        self.list_images(false)
    }

    /// `docker images [-a]`: without `all`, intermediate images (untagged parents of another
    /// image, left by builds) are left out, as Docker does.
    pub fn list_images(&self, all: bool) -> Result<Vec<ImageSummary>> {
        let records = self.read_records()?;
        let parents = parents(&records);
        let mut out = Vec::new();
        for record in records.images.values() {
            if !all && record.names.is_empty() && parents.contains(record.id.hex()) {
                continue;
            }
            let info = self.info(record)?;
            out.push(ImageSummary {
                id: info.id.clone(),
                names: info.names.clone(),
                created: info.created(),
                size: info.size,
            });
        }
        Ok(out)
    }

    /// `docker history`: the config's history entries, oldest first.
    pub fn history(&self, name_or_id: &str) -> Result<Vec<History>> {
        Ok(self.inspect(name_or_id)?.history)
    }

    /// The image's unpacked tar layer directories, lowest first: the overlay lower dirs
    /// (see [`crate::rootfs`]).
    pub fn layer_dirs(&self, name_or_id: &str) -> Result<Vec<PathBuf>> {
        let info = self.inspect(name_or_id)?;
        Ok(info
            .layers
            .into_iter()
            .filter(|l| l.diff_id.is_some())
            .map(|l| l.path)
            .collect())
    }

    /// `docker tag SOURCE TARGET`: gives the image a name, taking it from any other image.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let target = Reference::parse(target)?;
        let lock = self.lock()?;
        let records = self.read_records()?;
        let (id, _) = self.find(&records, source)?;
        let manifest = records
            .images
            .get(id.hex())
            .map(|r| r.manifest.clone())
            .ok_or_else(|| Error::ImageNotFound(source.to_owned()))?;
        self.record_image(&lock, &id, &manifest, &[target])
    }

    /// `docker rmi`: by name, removes that name (and the image once it has none); by id, removes
    /// the image (with several names only when `force`). Then frees content no image needs.
    pub fn remove(&self, name_or_id: &str, force: bool) -> Result<RemoveReport> {
        let lock = self.lock()?;
        let mut records = self.read_records()?;
        let (id, by_name) = self.find(&records, name_or_id)?;
        let parent = records.images.get(id.hex()).and_then(|r| r.parent.clone());
        let mut report = RemoveReport::default();
        let Some(record) = records.images.get_mut(id.hex()) else {
            return Err(Error::ImageNotFound(name_or_id.to_owned()));
        };
        match by_name {
            Some(name) => {
                let name = name.to_string();
                record.names.retain(|n| *n != name);
                report.untagged.push(name);
                if record.names.is_empty() {
                    records.images.remove(id.hex());
                    report.deleted = Some(id);
                }
            }
            None => {
                if record.names.len() > 1 && !force {
                    return Err(Error::Conflict(format!(
                        "image {id} is referenced by several names ({}); remove them by name, or force",
                        record.names.join(", ")
                    )));
                }
                report.untagged = std::mem::take(&mut record.names);
                records.images.remove(id.hex());
                report.deleted = Some(id);
            }
        }
        if report.deleted.is_some() {
            report.parents = remove_untagged_parents(&mut records, parent);
        }
        self.write_records(&lock, &records)?;
        report.gc = gc::collect(self, &lock)?;
        Ok(report)
    }

    /// `docker image prune`: removes images without a name, then frees unreferenced content.
    pub fn prune(&self) -> Result<(Vec<ImageId>, gc::GcReport)> {
        let lock = self.lock()?;
        let mut records = self.read_records()?;
        // Dangling: untagged and nobody's parent (an intermediate image stays while the image
        // built on it does); removing one may leave its parent dangling in turn.
        let mut dangling: Vec<ImageId> = Vec::new();
        loop {
            let parents = parents(&records);
            let round: Vec<ImageId> = records
                .images
                .values()
                .filter(|r| r.names.is_empty() && !parents.contains(r.id.hex()))
                .map(|r| r.id.clone())
                .collect();
            if round.is_empty() {
                break;
            }
            for id in &round {
                records.images.remove(id.hex());
            }
            dangling.extend(round);
        }
        self.write_records(&lock, &records)?;
        Ok((dangling, gc::collect(self, &lock)?))
    }

    /// Removes blobs and layers that no image record needs (see [`gc::GcReport`]).
    pub fn gc(&self) -> Result<gc::GcReport> {
        let lock = self.lock()?;
        gc::collect(self, &lock)
    }
}

/// The ids (hex) that are some recorded image's parent.
fn parents(records: &Records) -> std::collections::HashSet<String> {
    records
        .images
        .values()
        .filter_map(|r| r.parent.as_ref().map(|p| p.hex().to_owned()))
        .collect()
}

/// After an image went: removes its `parent` while that is untagged and has no other child, then
/// that one's parent, and so on (`docker rmi` without `--no-prune`).
fn remove_untagged_parents(records: &mut Records, parent: Option<ImageId>) -> Vec<ImageId> {
    let mut removed = Vec::new();
    let mut next = parent;
    while let Some(parent) = next {
        let Some(record) = records.images.get(parent.hex()) else {
            break;
        };
        let has_child = records
            .images
            .values()
            .any(|r| r.parent.as_ref() == Some(&parent));
        if !record.names.is_empty() || has_child {
            break;
        }
        let grandparent = record.parent.clone();
        records.images.remove(parent.hex());
        removed.push(parent);
        next = grandparent;
    }
    removed
}
