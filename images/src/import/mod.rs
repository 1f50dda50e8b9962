//! Importers: `load` of an OCI image layout (directory), an OCI archive (a tar of one) or a
//! `docker save` tarball, and `import` of a plain rootfs tarball as a one-layer image. Every
//! blob is verified while it is copied in, every tar layer while it is unpacked; nothing is
//! visible until the whole input checked out (see `store`).

mod docker_archive;
mod oci_layout;
pub(crate) use oci_layout::{CONTAINERD_NAME, REF_NAME};
mod rootfs;
mod source;

use std::path::Path;

pub use rootfs::ImportOptions;
pub(crate) use rootfs::rfc3339;
use source::{DirSource, Source, TarSource};

use crate::digest::Digest;
use crate::error::{Error, Result, invalid};
use crate::manifest::{Config, LayerKind, Manifest, diff_ids_for_layers};
use crate::reference::Reference;
use crate::store::{ImageId, Store, Txn};

/// One image a load added or updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// Its id (config digest).
    pub id: ImageId,
    /// Its manifest digest in the store.
    pub manifest: Digest,
    /// The names the input gave it.
    pub names: Vec<String>,
}

/// An image found in the input, before its record is written.
struct Found {
    id: ImageId,
    manifest: Digest,
    names: Vec<Reference>,
}

impl Store {
    /// `docker load -i PATH`: a directory is read as an OCI image layout; a file as a tar
    /// archive holding an OCI layout (`index.json`) or a docker-save tree (`manifest.json`).
    pub fn load(&self, path: &Path) -> Result<Vec<LoadedImage>> {
        let meta = std::fs::metadata(path).map_err(|e| Error::Io {
            op: "stat",
            path: path.to_owned(),
            source: e,
        })?;
        if meta.is_dir() {
            self.load_from(&DirSource::new(path))
        } else {
            self.load_from(&TarSource::open(path)?)
        }
    }

    fn load_from(&self, source: &dyn Source) -> Result<Vec<LoadedImage>> {
        let lock = self.lock()?;
        let mut txn = self.begin(&lock);
        let found = if let Some(index) = source.read("index.json")? {
            oci_layout::load(&mut txn, source, &index)?
        } else if let Some(manifest) = source.read("manifest.json")? {
            docker_archive::load(&mut txn, source, &manifest)?
        } else {
            return Err(invalid(
                source.name(),
                "neither an OCI image layout (index.json) nor a docker-save archive (manifest.json)",
            ));
        };
        txn.commit()?;
        let mut loaded = Vec::new();
        for image in found {
            self.record_image(&lock, &image.id, &image.manifest, &image.names)?;
            loaded.push(LoadedImage {
                id: image.id,
                manifest: image.manifest,
                names: image.names.iter().map(ToString::to_string).collect(),
            });
        }
        Ok(loaded)
    }
}

/// Copies a blob from the input into the transaction (unless the store has it), verifying its
/// digest and size as it streams.
fn copy_blob(
    txn: &mut Txn<'_>,
    source: &dyn Source,
    digest: &Digest,
    size: u64,
    named_by: &str,
) -> Result<()> {
    if txn.has_blob(digest) {
        return Ok(());
    }
    let path = format!("blobs/sha256/{}", digest.hex());
    let mut reader = source.open(&path)?.ok_or_else(|| Error::MissingBlob {
        source_name: source.name(),
        digest: digest.clone(),
        named_by: named_by.to_owned(),
    })?;
    txn.put_blob(&mut reader, Some(digest), Some(size))?;
    Ok(())
}

/// Brings in one manifest of an OCI layout with everything it names; returns the image id.
fn import_manifest(
    txn: &mut Txn<'_>,
    source: &dyn Source,
    manifest_digest: &Digest,
    size: u64,
) -> Result<ImageId> {
    copy_blob(txn, source, manifest_digest, size, "index.json")?;
    let what = format!("manifest {manifest_digest}");
    let manifest = Manifest::parse(&txn.read_blob(manifest_digest)?, &what)?;
    copy_blob(
        txn,
        source,
        &manifest.config.digest,
        manifest.config.size,
        &what,
    )?;
    let config_what = format!("config {}", manifest.config.digest);
    let config = Config::parse(
        &txn.read_blob(&manifest.config.digest)?,
        &manifest.config.media_type,
        &config_what,
    )?;
    if let Config::WasmArtifact(_) = config
        && manifest.layers.iter().any(|l| l.kind != LayerKind::Wasm)
    {
        return Err(invalid(&what, "a wasm artifact config with tar layers"));
    }
    let diff_ids = diff_ids_for_layers(&manifest, &config.diff_ids(&config_what)?, &config_what)?;
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        let d = &layer.descriptor;
        copy_blob(txn, source, &d.digest, d.size, &what)?;
        if let (LayerKind::Tar(compression), Some(diff_id)) = (layer.kind, diff_id) {
            txn.unpack_layer(&d.digest, compression, Some(diff_id))?;
        }
    }
    Ok(manifest.config.digest)
}
