//! `capsa diff`: the container's changes as Docker shows them, read from its upper dir alone
//! (no mount needed): an overlay whiteout (char device 0:0) is a deletion, an entry that some
//! lower layer has is a change, anything else an addition.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::Engine;
use super::container::ContainerRecord;
use super::error::{IoContext, Result};

/// `A`, `C` or `D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Added.
    Added,
    /// Changed.
    Changed,
    /// Deleted.
    Deleted,
}

impl ChangeKind {
    /// Docker's letter.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One line of `capsa diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The absolute path in the container.
    pub path: String,
}

/// Whether a directory entry is an overlay whiteout.
fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the path exists in the lower layers (top first), stopping at a whiteout.
fn in_lower(lowers: &[PathBuf], rel: &Path) -> bool {
    for l in lowers {
        if let Ok(m) = std::fs::symlink_metadata(l.join(rel)) {
            return !is_whiteout(&m);
        }
    }
    false
}

fn walk(
    dir: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    parent_new: bool,
    out: &mut Vec<Change>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .io("read_dir", dir)?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = rel.join(e.file_name());
        let meta = e.path().symlink_metadata().io("lstat", e.path())?;
        let path = format!("/{}", rel.display());
        if is_whiteout(&meta) {
            out.push(Change {
                kind: ChangeKind::Deleted,
                path,
            });
            continue;
        }
        let new = parent_new || !in_lower(lowers, &rel);
        out.push(Change {
            kind: if new {
                ChangeKind::Added
            } else {
                ChangeKind::Changed
            },
            path,
        });
        if meta.is_dir() {
            walk(&e.path(), &rel, lowers, new, out)?;
        }
    }
    Ok(())
}

impl Engine {
    /// The container's changes, sorted by path.
    pub fn diff(&self, c: &ContainerRecord) -> Result<Vec<Change>> {
        let dir = self.container_dir(&c.id);
        let mut lowers = vec![dir.join("init")];
        let mut layers = self.store.layer_dirs(&c.image_id)?;
        layers.reverse();
        lowers.extend(layers);
        let mut out = Vec::new();
        walk(&dir.join("upper"), Path::new(""), &lowers, false, &mut out)?;
        Ok(out)
    }
}
