//! `capsa diff`: the container's changes as Docker shows them, read from its upper dir alone
//! (no mount needed): an overlay whiteout (char device 0:0) is a deletion, an entry that some
//! lower layer has is a change, anything else an addition.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use capsa_images::commit::is_opaque;

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

/// Whether `rel` is visible through the lower layers (top first), as overlayfs resolves it: a
/// layer that has it decides (a whiteout hides it), and a layer where an ancestor is a
/// whiteout, a non-directory or an opaque directory hides every layer below.
fn in_lower(lowers: &[PathBuf], rel: &Path) -> bool {
    let ancestors: Vec<&Path> = rel
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .collect();
    for l in lowers {
        for a in ancestors.iter().rev() {
            if let Ok(m) = std::fs::symlink_metadata(l.join(a))
                && (is_whiteout(&m) || !m.is_dir())
            {
                return false;
            }
        }
        if let Ok(m) = std::fs::symlink_metadata(l.join(rel)) {
            return !is_whiteout(&m);
        }
        if ancestors.iter().any(|a| is_opaque(&l.join(a))) {
            return false;
        }
    }
    false
}

/// The names visible in directory `rel` through the lower layers.
fn lower_names(lowers: &[PathBuf], rel: &Path) -> Vec<std::ffi::OsString> {
    let mut names = std::collections::BTreeSet::new();
    for l in lowers {
        if let Ok(rd) = std::fs::read_dir(l.join(rel)) {
            names.extend(rd.flatten().map(|e| e.file_name()));
        }
    }
    names
        .into_iter()
        .filter(|n| in_lower(lowers, &rel.join(n)))
        .collect()
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
            // A directory removed and made again is opaque: what the image had in it is gone.
            if !new && is_opaque(&e.path()) {
                for name in lower_names(lowers, &rel) {
                    if std::fs::symlink_metadata(e.path().join(&name)).is_err() {
                        out.push(Change {
                            kind: ChangeKind::Deleted,
                            path: format!("/{}", rel.join(&name).display()),
                        });
                    }
                }
            }
            walk(&e.path(), &rel, lowers, new, out)?;
        }
    }
    Ok(())
}

impl Engine {
    /// The container's changes, sorted by path (as `docker diff`).
    pub fn diff(&self, c: &ContainerRecord) -> Result<Vec<Change>> {
        let dir = self.container_dir(&c.id);
        let mut lowers = vec![dir.join("init")];
        let mut layers = self.store.layer_dirs(&c.image_id)?;
        layers.reverse();
        lowers.extend(layers);
        let mut out = Vec::new();
        walk(&dir.join("upper"), Path::new(""), &lowers, false, &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}
