//! Manifests, indexes and configs, OCI and Docker v2, parsed once at the boundary into types
//! that only hold what the store handles: sha256 digests and known layer media types.

use std::collections::HashMap;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::{Error, Result, invalid};
use crate::unpack::Compression;

/// Media types of manifests, indexes and configs.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI uncompressed layer.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker v2 schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// The CNCF wasm artifact's config.
    pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
    /// A raw wasm module layer (CNCF wasm artifact).
    pub const WASM_LAYER: &str = "application/wasm";
    /// A raw wasm component layer (runwasi's layout).
    pub const WASM_COMPONENT_LAYER: &str =
        "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
}

/// What a layer blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// A tar changeset, unpacked into a layer directory.
    Tar(Compression),
    /// A raw wasm module or component, kept as a blob only.
    Wasm,
}

impl LayerKind {
    /// The kind a layer media type names; unknown types are refused.
    pub fn from_media_type(media_type: &str) -> Result<LayerKind> {
        let kind = match media_type {
            media::OCI_LAYER_TAR
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => LayerKind::Tar(Compression::None),
            media::OCI_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | media::DOCKER_LAYER_GZIP
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                LayerKind::Tar(Compression::Gzip)
            }
            media::OCI_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
                LayerKind::Tar(Compression::Zstd)
            }
            media::WASM_LAYER | media::WASM_COMPONENT_LAYER => LayerKind::Wasm,
            other => {
                return Err(Error::UnsupportedMediaType {
                    media_type: other.to_owned(),
                    what: "layer",
                });
            }
        };
        Ok(kind)
    }

    /// The OCI media type for this kind (used when exporting or making manifests).
    pub fn oci_media_type(self) -> &'static str {
        match self {
            LayerKind::Tar(Compression::None) => media::OCI_LAYER_TAR,
            LayerKind::Tar(Compression::Gzip) => media::OCI_LAYER_GZIP,
            LayerKind::Tar(Compression::Zstd) => media::OCI_LAYER_ZSTD,
            LayerKind::Wasm => media::WASM_LAYER,
        }
    }
}

/// A validated content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The media type as written.
    pub media_type: String,
    /// The content's digest.
    pub digest: Digest,
    /// The content's size in bytes.
    pub size: u64,
}

/// One layer of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The layer blob.
    pub descriptor: Descriptor,
    /// How to treat it.
    pub kind: LayerKind,
}

/// A single-platform image manifest (OCI or Docker v2 schema 2).
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `application/vnd.oci.image.manifest.v1+json` or Docker's v2 type.
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, lowest first.
    pub layers: Vec<Layer>,
}

fn descriptor(d: &oci_spec::image::Descriptor, what: &str) -> Result<Descriptor> {
    let digest = Digest::parse(d.digest().as_ref()).map_err(|e| invalid(what, e.to_string()))?;
    Ok(Descriptor {
        media_type: d.media_type().to_string(),
        digest,
        size: d.size(),
    })
}

/// Whether a media type is an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == media::OCI_INDEX || media_type == media::DOCKER_LIST
}

impl Manifest {
    /// Parses a manifest blob; `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Manifest> {
        let raw: ImageManifest =
            serde_json::from_slice(bytes).map_err(|e| invalid(what, e.to_string()))?;
        if raw.schema_version() != 2 {
            return Err(invalid(
                what,
                format!(
                    "schemaVersion {} (only 2 is supported)",
                    raw.schema_version()
                ),
            ));
        }
        let media_type = raw
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| media::OCI_MANIFEST.to_owned());
        if media_type != media::OCI_MANIFEST && media_type != media::DOCKER_MANIFEST {
            return Err(Error::UnsupportedMediaType {
                media_type,
                what: "manifest",
            });
        }
        let config = descriptor(raw.config(), what)?;
        let layers = raw
            .layers()
            .iter()
            .map(|l| {
                let descriptor = descriptor(l, what)?;
                let kind = LayerKind::from_media_type(&descriptor.media_type)?;
                Ok(Layer { descriptor, kind })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Manifest {
            media_type,
            config,
            layers,
        })
    }

    /// Whether the config is the CNCF wasm artifact's (no rootfs, no diff_ids).
    pub fn is_wasm_artifact(&self) -> bool {
        self.config.media_type == media::WASM_CONFIG
    }
}

/// One entry of an index: a manifest for one platform, with its annotations.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// The manifest (or nested index).
    pub descriptor: Descriptor,
    /// `os/architecture[/variant]`, when given.
    pub platform: Option<(String, String, Option<String>)>,
    /// Annotations (`org.opencontainers.image.ref.name`, ...).
    pub annotations: HashMap<String, String>,
}

/// Parses an index (OCI image index or Docker manifest list).
pub fn parse_index(bytes: &[u8], what: &str) -> Result<Vec<IndexEntry>> {
    let raw: ImageIndex =
        serde_json::from_slice(bytes).map_err(|e| invalid(what, e.to_string()))?;
    raw.manifests()
        .iter()
        .map(|d| {
            Ok(IndexEntry {
                descriptor: descriptor(d, what)?,
                platform: d.platform().as_ref().map(|p| {
                    (
                        p.os().to_string(),
                        p.architecture().to_string(),
                        p.variant().clone(),
                    )
                }),
                annotations: d.annotations().clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// The Go architecture name of this machine, as image platforms spell it.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// An image's config: the OCI/Docker image config, or the CNCF wasm artifact's config (which
/// has no rootfs), kept as JSON.
#[derive(Debug, Clone)]
pub enum Config {
    /// An OCI or Docker image config.
    Image(Box<ImageConfiguration>),
    /// A `application/vnd.wasm.config.v0+json` config.
    WasmArtifact(serde_json::Value),
}

impl Config {
    /// Parses a config blob of the given media type.
    pub fn parse(bytes: &[u8], media_type: &str, what: &str) -> Result<Config> {
        if media_type == media::WASM_CONFIG {
            let value = serde_json::from_slice(bytes).map_err(|e| invalid(what, e.to_string()))?;
            return Ok(Config::WasmArtifact(value));
        }
        let config = serde_json::from_slice(bytes).map_err(|e| invalid(what, e.to_string()))?;
        Ok(Config::Image(Box::new(config)))
    }

    /// The config's rootfs.diff_ids (none for a wasm artifact).
    pub fn diff_ids(&self, what: &str) -> Result<Vec<Digest>> {
        match self {
            Config::Image(c) => c
                .rootfs()
                .diff_ids()
                .iter()
                .map(|d| {
                    Digest::parse(d).map_err(|e| invalid(what, format!("rootfs.diff_ids: {e}")))
                })
                .collect(),
            Config::WasmArtifact(_) => Ok(Vec::new()),
        }
    }
}

/// Pairs each layer with the diff_id its unpacked content must have: `Some` for tar layers,
/// `None` for raw wasm layers. The config must give one diff_id per layer, or one per tar layer.
pub fn diff_ids_for_layers(
    manifest: &Manifest,
    diff_ids: &[Digest],
    what: &str,
) -> Result<Vec<Option<Digest>>> {
    let tar_layers = manifest
        .layers
        .iter()
        .filter(|l| matches!(l.kind, LayerKind::Tar(_)))
        .count();
    if diff_ids.len() == manifest.layers.len() {
        return Ok(manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(l, d)| matches!(l.kind, LayerKind::Tar(_)).then(|| d.clone()))
            .collect());
    }
    if diff_ids.len() == tar_layers {
        let mut ids = diff_ids.iter();
        return Ok(manifest
            .layers
            .iter()
            .map(|l| match l.kind {
                LayerKind::Tar(_) => ids.next().cloned(),
                LayerKind::Wasm => None,
            })
            .collect());
    }
    Err(invalid(
        what,
        format!(
            "config has {} rootfs.diff_ids for {} layers",
            diff_ids.len(),
            manifest.layers.len()
        ),
    ))
}
