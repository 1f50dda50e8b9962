//! Exporters: images as an OCI image layout (a directory), an OCI archive (the tar of one) or a
//! `docker save` tarball. Blobs go out as stored; a Docker v2 manifest is rewritten with OCI
//! media types for the OCI formats (umoci reads only those), and docker-save gets each tar layer
//! uncompressed, checked against its diff_id as it streams out.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result, invalid};
use crate::import::{CONTAINERD_NAME, REF_NAME};
use crate::manifest::{LayerKind, media};
use crate::reference::Reference;
use crate::store::{ImageInfo, Store};

/// Where exported files go: a directory or a tar stream.
trait Sink {
    fn add(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<()>;

    fn add_bytes(&mut self, path: &str, mut bytes: &[u8]) -> Result<()> {
        self.add(path, bytes.len() as u64, &mut bytes)
    }
}

struct DirSink {
    dir: PathBuf,
}

impl Sink for DirSink {
    fn add(&mut self, path: &str, _size: u64, reader: &mut dyn Read) -> Result<()> {
        let dest = self.dir.join(path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).ctx("mkdir", parent)?;
        }
        let mut file = fs::File::create(&dest).ctx("create", &dest)?;
        io::copy(reader, &mut file).ctx("write", &dest)?;
        Ok(())
    }
}

struct TarSink<'a> {
    builder: tar::Builder<&'a mut dyn Write>,
}

impl Sink for TarSink<'_> {
    fn add(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        self.builder
            .append_data(&mut header, path, reader.take(size))
            .ctx("write archive member", path)
    }
}

/// The images to export with the names each goes out under: a name given selects that name,
/// an id selects all the image's names.
fn select(store: &Store, refs: &[&str]) -> Result<Vec<(ImageInfo, Vec<Reference>)>> {
    let mut out: Vec<(ImageInfo, Vec<Reference>)> = Vec::new();
    for r in refs {
        let id = store.resolve(r)?;
        let info = store.inspect(id.to_string().as_str())?;
        let by_name = Reference::parse(r)
            .ok()
            .filter(|n| info.names.contains(&n.to_string()));
        let names = match by_name {
            Some(n) => vec![n],
            None => info
                .names
                .iter()
                .filter_map(|n| Reference::parse(n).ok())
                .collect(),
        };
        match out.iter_mut().find(|(i, _)| i.id == info.id) {
            Some((_, existing)) => {
                for n in names {
                    if !existing.contains(&n) {
                        existing.push(n);
                    }
                }
            }
            None => out.push((info, names)),
        }
    }
    Ok(out)
}

fn copy_blob(
    store: &Store,
    sink: &mut dyn Sink,
    digest: &Digest,
    done: &mut Vec<Digest>,
) -> Result<()> {
    if done.contains(digest) {
        return Ok(());
    }
    let path = store.blob_path(digest);
    let size = fs::metadata(&path).ctx("stat", &path)?.len();
    let mut file = store.open_blob(digest)?;
    sink.add(&format!("blobs/sha256/{}", digest.hex()), size, &mut file)?;
    done.push(digest.clone());
    Ok(())
}

/// The manifest to export in an OCI layout: the stored one if it is OCI, else a rewrite.
fn oci_manifest(store: &Store, info: &ImageInfo) -> Result<Vec<u8>> {
    if info.manifest.media_type == media::OCI_MANIFEST {
        return store.read_blob(&info.manifest_digest);
    }
    let layers: Vec<_> = info
        .manifest
        .layers
        .iter()
        .map(|l| json!({ "mediaType": l.kind.oci_media_type(), "digest": l.descriptor.digest.to_string(), "size": l.descriptor.size }))
        .collect();
    let c = &info.manifest.config;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": { "mediaType": media::OCI_CONFIG, "digest": c.digest.to_string(), "size": c.size },
        "layers": layers,
    });
    serde_json::to_vec(&manifest).map_err(|e| invalid("manifest", e.to_string()))
}

fn write_oci(store: &Store, refs: &[&str], sink: &mut dyn Sink) -> Result<()> {
    let mut done = Vec::new();
    let mut index = Vec::new();
    for (info, names) in select(store, refs)? {
        copy_blob(store, sink, &info.manifest.config.digest, &mut done)?;
        for layer in &info.manifest.layers {
            copy_blob(store, sink, &layer.descriptor.digest, &mut done)?;
        }
        let manifest = oci_manifest(store, &info)?;
        let digest = Digest::of_bytes(&manifest);
        if !done.contains(&digest) {
            sink.add_bytes(&format!("blobs/sha256/{}", digest.hex()), &manifest)?;
            done.push(digest.clone());
        }
        let (os, architecture) = info.platform();
        let descriptor = |annotations: Option<BTreeMap<&str, String>>| {
            let mut d = json!({
                "mediaType": media::OCI_MANIFEST,
                "digest": digest.to_string(),
                "size": manifest.len(),
                "platform": { "os": os, "architecture": architecture },
            });
            if let Some(a) = annotations {
                d["annotations"] = json!(a);
            }
            d
        };
        if names.is_empty() {
            index.push(descriptor(None));
        }
        for name in names {
            let annotations = BTreeMap::from([
                (CONTAINERD_NAME, name.qualified()),
                (REF_NAME, name.tag().to_owned()),
            ]);
            index.push(descriptor(Some(annotations)));
        }
    }
    sink.add_bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": index });
    sink.add_bytes(
        "index.json",
        &serde_json::to_vec(&index).map_err(|e| invalid("index.json", e.to_string()))?,
    )
}

impl Store {
    /// `docker save` as an OCI image layout in the directory `dir` (created if needed).
    pub fn export_oci_layout(&self, images: &[&str], dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).ctx("mkdir", dir)?;
        write_oci(
            self,
            images,
            &mut DirSink {
                dir: dir.to_owned(),
            },
        )
    }

    /// `docker save --format oci-archive`: the OCI layout as a tar stream.
    pub fn export_oci_archive(&self, images: &[&str], out: &mut dyn Write) -> Result<()> {
        let mut sink = TarSink {
            builder: tar::Builder::new(out),
        };
        write_oci(self, images, &mut sink)?;
        sink.builder.finish().ctx("write", "archive end")
    }

    /// `docker save`: `manifest.json`, `<config hex>.json` and `<diff_id hex>.tar` per layer,
    /// uncompressed. Raw wasm layers have no place in this format and are refused.
    pub fn export_docker_archive(&self, images: &[&str], out: &mut dyn Write) -> Result<()> {
        let mut sink = TarSink {
            builder: tar::Builder::new(out),
        };
        let mut written: Vec<String> = Vec::new();
        let mut manifest = Vec::new();
        for (info, names) in select(self, images)? {
            let config_name = format!("{}.json", info.id.hex());
            if !written.contains(&config_name) {
                sink.add_bytes(&config_name, &self.read_blob(&info.id)?)?;
                written.push(config_name.clone());
            }
            let mut layer_names = Vec::new();
            for layer in &info.layers {
                let (LayerKind::Tar(compression), Some(diff_id)) = (layer.kind, &layer.diff_id)
                else {
                    return Err(Error::UnsupportedMediaType {
                        media_type: layer.descriptor.media_type.clone(),
                        what: "docker-save export",
                    });
                };
                let name = format!("{}.tar", diff_id.hex());
                if !written.contains(&name) {
                    let meta = self.layer_meta(diff_id)?;
                    let file = self.open_blob(&layer.descriptor.digest)?;
                    let decoder = compression
                        .decoder(file)
                        .ctx("decompress", self.blob_path(&layer.descriptor.digest))?;
                    let mut hashed = HashingReader::new(decoder);
                    sink.add(&name, meta.size, &mut hashed)?;
                    let (actual, count) = hashed
                        .finish()
                        .ctx("decompress", self.blob_path(&layer.descriptor.digest))?;
                    if actual != *diff_id || count != meta.size {
                        return Err(Error::DiffIdMismatch {
                            layer: layer.descriptor.digest.clone(),
                            expected: diff_id.clone(),
                            actual,
                        });
                    }
                    written.push(name.clone());
                }
                layer_names.push(name);
            }
            let tags: Vec<String> = names.iter().map(ToString::to_string).collect();
            manifest
                .push(json!({ "Config": config_name, "RepoTags": tags, "Layers": layer_names }));
        }
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| invalid("manifest.json", e.to_string()))?;
        sink.add_bytes("manifest.json", &bytes)?;
        sink.builder.finish().ctx("write", "archive end")
    }
}
