//! Garbage collection: what no image record reaches (its manifest, config, layer blobs and
//! unpacked layers) is removed. If any record cannot be read, nothing is removed: a live image's
//! content is never taken. A layer directory is first renamed into `tmp/`, so a half-removed
//! layer is never seen as a layer. Containers are the engine's: it must keep an image record
//! for every image a container uses.

use std::collections::HashSet;
use std::fs;

use super::{Lock, Store, layers, remove_any};
use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::manifest::{Config, Manifest};

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed from the content store.
    pub blobs_removed: Vec<Digest>,
    /// Unpacked layers removed, by diff_id.
    pub layers_removed: Vec<Digest>,
}

/// Collects under the writer lock.
pub(crate) fn collect(store: &Store, _lock: &Lock) -> Result<GcReport> {
    let mut keep_blobs = HashSet::new();
    let mut keep_layers = HashSet::new();
    for record in store.records()? {
        let manifest = Manifest::parse(
            &store.read_blob(&record.manifest)?,
            &format!("manifest {}", record.manifest),
        )?;
        let what = format!("config {}", manifest.config.digest);
        let config = Config::parse(
            &store.read_blob(&manifest.config.digest)?,
            &manifest.config.media_type,
            &what,
        )?;
        keep_layers.extend(config.diff_ids(&what)?);
        keep_blobs.insert(record.manifest.clone());
        keep_blobs.insert(manifest.config.digest.clone());
        keep_blobs.extend(manifest.layers.iter().map(|l| l.descriptor.digest.clone()));
    }
    let mut report = GcReport::default();
    for digest in store.blobs()? {
        if !keep_blobs.contains(&digest) {
            let path = store.blob_path(&digest);
            fs::remove_file(&path).ctx("unlink", &path)?;
            report.blobs_removed.push(digest);
        }
    }
    for diff_id in store.layers()? {
        if keep_layers.contains(&diff_id) {
            continue;
        }
        let link = store.layer_meta(&diff_id).ok().map(|m| m.link);
        let dir = layers::dir(store.root(), &diff_id);
        let doomed = store.tmp_path("rm");
        fs::rename(&dir, &doomed).ctx("rename", &dir)?;
        if let Some(link) = link.filter(|l| !l.is_empty()) {
            let path = store.root().join("l").join(link);
            let _ = fs::remove_file(path);
        }
        remove_any(&doomed)?;
        remove_mapped_copies(store, &diff_id)?;
        report.layers_removed.push(diff_id);
    }
    layers::remove_dangling_links(store.root())?;
    Ok(report)
}

/// The copies of a layer made for user-namespace mappings (`<root>/userns/UID.GID/<diff_id>`,
/// where the filesystem cannot id-map the layer itself) go with the layer.
fn remove_mapped_copies(store: &Store, diff_id: &Digest) -> Result<()> {
    let mappings = store.root().join("userns");
    let Ok(entries) = fs::read_dir(&mappings) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let copy = entry.path().join(diff_id.hex());
        if copy.is_dir() {
            let doomed = store.tmp_path("rm");
            fs::rename(&copy, &doomed).ctx("rename", &copy)?;
            remove_any(&doomed)?;
        }
    }
    Ok(())
}
