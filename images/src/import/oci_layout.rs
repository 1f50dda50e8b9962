//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`), as a directory or as
//! the tar of one (`podman save --format oci-archive`, `skopeo copy … oci-archive:`).

use super::source::Source;
use super::{Found, import_manifest};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result, invalid};
use crate::manifest::{IndexEntry, host_architecture, is_index, media, parse_index};
use crate::reference::Reference;
use crate::store::Txn;

/// The annotation containerd writes with the full image name.
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for the name (a full reference, or just a tag).
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Loads every manifest `index.json` names.
pub(super) fn load(txn: &mut Txn<'_>, source: &dyn Source, index: &[u8]) -> Result<Vec<Found>> {
    if let Some(layout) = source.read("oci-layout")? {
        let v: serde_json::Value =
            serde_json::from_slice(&layout).map_err(|e| invalid("oci-layout", e.to_string()))?;
        if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(invalid(
                format!("{}: oci-layout", source.name()),
                "imageLayoutVersion is not 1.0.0",
            ));
        }
    }
    let mut found: Vec<Found> = Vec::new();
    for entry in parse_index(index, &format!("{}: index.json", source.name()))? {
        let names = names(&entry);
        let manifest = pick_manifest(source, &entry, 0)?;
        let id = import_manifest(txn, source, &manifest.digest, manifest.size)?;
        match found.iter_mut().find(|f| f.id == id) {
            Some(f) => f.names.extend(names),
            None => found.push(Found {
                id,
                manifest: manifest.digest,
                names,
            }),
        }
    }
    Ok(found)
}

/// The entry's name: containerd's full-name annotation, else `ref.name` when it is a full
/// reference (a bare tag names no repository, so it gives no name).
fn names(entry: &IndexEntry) -> Vec<Reference> {
    let full = entry.annotations.get(CONTAINERD_NAME).or_else(|| {
        entry
            .annotations
            .get(REF_NAME)
            .filter(|n| n.contains('/') || n.contains(':'))
    });
    full.and_then(|n| Reference::parse(n).ok())
        .into_iter()
        .collect()
}

/// The single-platform manifest an index entry leads to: itself, or from a nested index the
/// one for this machine (linux/<arch>), or the only one.
fn pick_manifest(
    source: &dyn Source,
    entry: &IndexEntry,
    depth: usize,
) -> Result<crate::manifest::Descriptor> {
    let d = &entry.descriptor;
    if d.media_type == media::OCI_MANIFEST || d.media_type == media::DOCKER_MANIFEST {
        return Ok(d.clone());
    }
    if !is_index(&d.media_type) || depth > 4 {
        return Err(Error::UnsupportedMediaType {
            media_type: d.media_type.clone(),
            what: "index entry",
        });
    }
    let bytes = read_verified(source, &d.digest, "index.json")?;
    let entries = parse_index(&bytes, &format!("index {}", d.digest))?;
    let arch = host_architecture();
    let chosen = entries
        .iter()
        .find(|e| matches!(&e.platform, Some((os, a, _)) if os == "linux" && a == arch))
        .or_else(|| {
            if entries.len() == 1 {
                entries.first()
            } else {
                None
            }
        })
        .ok_or_else(|| {
            invalid(
                format!("index {}", d.digest),
                format!("no manifest for linux/{arch}"),
            )
        })?;
    pick_manifest(source, chosen, depth + 1)
}

/// Reads a small blob from the input and checks its digest (nested indexes are not stored).
fn read_verified(source: &dyn Source, digest: &Digest, named_by: &str) -> Result<Vec<u8>> {
    let path = format!("blobs/sha256/{}", digest.hex());
    let mut reader = source.open(&path)?.ok_or_else(|| Error::MissingBlob {
        source_name: source.name(),
        digest: digest.clone(),
        named_by: named_by.to_owned(),
    })?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut bytes)
        .ctx("read", format!("{}: {path}", source.name()))?;
    let mut hasher = Hasher::new();
    hasher.update(&bytes);
    let actual = hasher.finish();
    if actual != *digest {
        return Err(Error::DigestMismatch {
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}
