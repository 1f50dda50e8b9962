//! The build cache: which image a step made from which parent, so a rebuild reuses every step
//! whose parent and instruction (after substitution, with the build args it uses and, for
//! `COPY`/`ADD`, the checksum of what it copies) are unchanged, as Docker's classic builder.
//!
//! It is one file, `<root>/build-cache.json` (step key → image id), rewritten atomically under
//! the store's writer lock, so it survives restarts and a crash leaves the old or the new
//! version. An entry is only used while its image is still recorded and every layer of that
//! image is still in the store; otherwise the step runs again. `builder prune` empties it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{IoContext, Result, invalid};
use crate::store::{ImageId, Store, write_atomic};

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    /// sha256(parent, step key) → the image that step made.
    entries: BTreeMap<String, ImageId>,
}

/// The key an entry is filed under: the parent (or `scratch`) and the step's own key.
fn entry_key(parent: Option<&ImageId>, step: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(parent.map_or("scratch".to_owned(), |p| p.to_string()));
    hasher.update(b"\n");
    hasher.update(step.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Store {
    fn cache_path(&self) -> PathBuf {
        self.root().join("build-cache.json")
    }

    fn read_cache(&self) -> Result<CacheFile> {
        let path = self.cache_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| invalid(path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CacheFile::default()),
            Err(e) => Err(e).ctx("read", &path),
        }
    }

    /// The image a step with key `step` made from `parent` before, if it is still whole in the
    /// store (its record, its config, every layer).
    pub fn cached_step(&self, parent: Option<&ImageId>, step: &str) -> Result<Option<ImageId>> {
        let cache = self.read_cache()?;
        let Some(id) = cache.entries.get(&entry_key(parent, step)) else {
            return Ok(None);
        };
        let Ok(info) = self.inspect(&id.to_string()) else {
            return Ok(None);
        };
        let whole = info.layers.iter().all(|l| match &l.diff_id {
            Some(diff_id) => self.layer_diff_dir(diff_id).is_some(),
            None => self.has_blob(&l.descriptor.digest),
        }) && self.has_blob(&info.id);
        Ok(whole.then_some(info.id))
    }

    /// Files `image` as what step `step` makes from `parent` (the newest wins).
    pub fn remember_step(
        &self,
        parent: Option<&ImageId>,
        step: &str,
        image: &ImageId,
    ) -> Result<()> {
        let lock = self.lock()?;
        let mut cache = self.read_cache()?;
        cache.entries.insert(entry_key(parent, step), image.clone());
        let bytes =
            serde_json::to_vec(&cache).map_err(|e| invalid("build cache", e.to_string()))?;
        let result = write_atomic(self, &self.cache_path(), &bytes);
        drop(lock);
        result
    }

    /// `builder prune`: forgets every cached step; returns their keys. (The engine then
    /// prunes the dangling images this leaves, as `image prune`.)
    pub fn clear_build_cache(&self) -> Result<Vec<String>> {
        let lock = self.lock()?;
        let entries: Vec<String> = self.read_cache()?.entries.into_keys().collect();
        let path = self.cache_path();
        let result = match std::fs::remove_file(&path) {
            Ok(()) => Ok(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(entries),
            Err(e) => Err(e).ctx("unlink", &path),
        };
        drop(lock);
        result
    }
}
