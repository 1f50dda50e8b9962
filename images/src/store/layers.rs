//! The layer store: each tar layer unpacked once into `layers/<diff_id hex>/diff`, with its
//! `meta.json`, and a short symlink `l/<id> -> ../layers/<hex>/diff` that keeps overlay mount
//! options under a page. Layers are keyed by diff_id: with overlayfs a layer directory does not
//! depend on its parents, so one directory serves every image that has the layer.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{IoContext, Result, invalid};

/// What the store knows about an unpacked layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerMeta {
    /// The sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// The uncompressed tar stream's size (a docker-save export writes it back out).
    pub size: u64,
    /// The short name under `<root>/l/`.
    pub link: String,
}

/// `<root>/layers/<hex>`.
pub(crate) fn dir(root: &Path, diff_id: &Digest) -> PathBuf {
    root.join("layers").join(diff_id.hex())
}

/// The symlink target of a layer's short link, relative to `<root>/l`.
pub(crate) fn link_target(diff_id: &Digest) -> PathBuf {
    Path::new("../layers").join(diff_id.hex()).join("diff")
}

/// Reads a stored layer's meta.json.
pub(crate) fn read_meta(root: &Path, diff_id: &Digest) -> Result<LayerMeta> {
    let path = dir(root, diff_id).join("meta.json");
    let bytes = fs::read(&path).ctx("read", &path)?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(path.display().to_string(), e.to_string()))
}

/// Picks the short link name for a layer: the shortest prefix (12 hex digits or more) of its
/// diff_id that is free or already points at it. Prefixes can collide on purpose-built input,
/// so a taken name is never reused for another layer.
pub(crate) fn choose_link(
    root: &Path,
    diff_id: &Digest,
    taken: &HashSet<String>,
) -> Result<String> {
    let want = link_target(diff_id);
    let hex = diff_id.hex();
    for len in (12..=64).step_by(4) {
        let name = &hex[..len];
        if taken.contains(name) {
            continue;
        }
        let path = root.join("l").join(name);
        match fs::read_link(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(name.to_owned()),
            Ok(target) if target == want => return Ok(name.to_owned()),
            Ok(_) => continue,
            Err(e) => return Err(e).ctx("readlink", &path),
        }
    }
    Err(invalid(
        format!("layer {diff_id}"),
        "no free short link name",
    ))
}

/// The diff_ids of the layers in `<root>/layers`.
pub(crate) fn list(root: &Path) -> Result<Vec<Digest>> {
    let dir = root.join("layers");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).ctx("read_dir", &dir)? {
        let entry = entry.ctx("read_dir", &dir)?;
        if let Some(d) = entry
            .file_name()
            .to_str()
            .and_then(|n| Digest::from_hex(n).ok())
        {
            out.push(d);
        }
    }
    out.sort();
    Ok(out)
}

/// Removes short links whose layer is gone (a crash between making the link and renaming the
/// layer into place leaves one).
pub(crate) fn remove_dangling_links(root: &Path) -> Result<()> {
    let dir = root.join("l");
    for entry in fs::read_dir(&dir).ctx("read_dir", &dir)? {
        let path = entry.ctx("read_dir", &dir)?.path();
        if fs::metadata(&path).is_err() {
            fs::remove_file(&path).ctx("unlink", &path)?;
        }
    }
    Ok(())
}
