//! `pull`: manifest (through an index when there is one, choosing the platform), config, then
//! the layers: downloaded in parallel by worker threads, each verified as it arrives and moved
//! into the content store, and unpacked by the calling thread as soon as it is there (in the
//! order downloads finish) while the other downloads go on. The image record is written last;
//! a pull that fails leaves no record and no layer, only complete verified blobs (which the next
//! pull reuses) and partial downloads under `downloads/` (which it resumes).
//!
//! An image of Docker Hub is tried on each configured mirror first, in order, then on Docker
//! Hub: a source that cannot be reached, has no such image, answers 5xx or serves bytes that do
//! not match their digests is left for the next one (what it had verified stays and is reused).
//! Failures of this machine (the store, a credential helper) end the pull at once.

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use ureq::http::Method;

use super::RegistryOptions;
use super::client::{Body, Client};
use super::credentials;
use super::download::{self, Fetch, FetchedBlob};
use super::error::{Error, Result};
use super::platform::{self, Platform};
use super::progress::{BlobOutcome, Progress};
use super::reference::{DOCKER_HUB, ImageRef};
use crate::digest::Digest;
use crate::error::IoContext;
use crate::manifest::{
    Config, Descriptor, LayerKind, Manifest, diff_ids_for_layers, is_index, media, parse_index,
};
use crate::store::{ImageId, Store};

/// The largest manifest or index accepted (Docker's own bound is 4 MiB).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// The largest image config accepted.
pub const CONFIG_LIMIT: u64 = 16 << 20;
/// Nested indexes followed at most.
const MAX_INDEX_DEPTH: usize = 2;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to take from an index; `None`: this machine's (`linux/<arch>`), else
    /// `wasi/wasm`.
    pub platform: Option<Platform>,
    /// Connection settings (insecure registries, CAs).
    pub registry: RegistryOptions,
    /// Layers downloaded at once (at least 1).
    pub parallel: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            registry: RegistryOptions::default(),
            parallel: 4,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image id (config digest).
    pub id: ImageId,
    /// The manifest's digest (the platform's manifest, not the index).
    pub manifest: Digest,
    /// The name recorded in the store (none for a digest-only reference).
    pub name: Option<String>,
    /// Blobs downloaded this time (with what a resume saved).
    pub fetched: Vec<FetchedBlob>,
    /// Layer blobs the store already had.
    pub reused: Vec<Digest>,
    /// Layers unpacked this time.
    pub unpacked: Vec<Digest>,
    /// Where the image came from: a mirror's URL, or the registry (`docker.io`, `host:port`).
    pub source: String,
}

/// Pulls `reference` into `store`: see the module's documentation.
pub fn pull(
    store: &Store,
    reference: &ImageRef,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<PullReport> {
    if reference.registry() == DOCKER_HUB {
        for mirror in &options.registry.mirrors {
            let credentials = credentials::lookup(store, mirror.host())?;
            let client = Client::for_mirror(
                mirror,
                reference.repository(),
                credentials,
                &options.registry,
            )?;
            progress.message(&format!("{reference}: trying mirror {mirror}"));
            match pull_from(store, reference, options, progress, &client) {
                Ok(report) => {
                    return Ok(PullReport {
                        source: mirror.url().to_owned(),
                        ..report
                    });
                }
                Err(e) if e.is_local() => return Err(e),
                Err(e) => progress.message(&format!(
                    "{reference}: mirror {mirror} failed, trying the next source: {e}"
                )),
            }
        }
    }
    let credentials = match &options.registry.auth {
        Some(auth) => Some(auth.credentials()),
        None => credentials::lookup(store, reference.registry())?,
    };
    let client = Client::new(
        reference.registry(),
        reference.repository(),
        credentials,
        &options.registry,
        Vec::new(),
    )?;
    let report = pull_from(store, reference, options, progress, &client)?;
    Ok(PullReport {
        source: reference.registry().to_owned(),
        ..report
    })
}

/// The pull from one source (the registry or a mirror), `client`.
fn pull_from(
    store: &Store,
    reference: &ImageRef,
    options: &PullOptions,
    progress: &dyn Progress,
    client: &Client,
) -> Result<PullReport> {
    let (manifest_digest, manifest_bytes) =
        resolve_manifest(client, reference, options.platform.as_ref(), progress)?;
    let what = format!("manifest {manifest_digest}");
    let manifest =
        Manifest::parse(&manifest_bytes, &what).map_err(|e| invalid(client, &what, e))?;
    let config_bytes = fetch_small(
        client,
        &format!("blobs/{}", manifest.config.digest),
        &[],
        Some(&manifest.config.digest),
        CONFIG_LIMIT,
        "config",
    )?
    .1;
    let config_what = format!("config {}", manifest.config.digest);
    let config = Config::parse(&config_bytes, &manifest.config.media_type, &config_what)
        .map_err(|e| invalid(client, &config_what, e))?;
    if let Config::WasmArtifact(_) = config
        && manifest.layers.iter().any(|l| l.kind != LayerKind::Wasm)
    {
        return Err(Error::Invalid {
            registry: client.registry.clone(),
            repository: client.repository.clone(),
            what,
            reason: "a wasm artifact config with tar layers".to_owned(),
        });
    }
    let diff_ids = config
        .diff_ids(&config_what)
        .and_then(|ids| diff_ids_for_layers(&manifest, &ids, &config_what))
        .map_err(|e| invalid(client, &config_what, e))?;

    let lock = store.lock()?;
    let mut txn = store.begin(&lock);
    let downloads = downloads_dir(store)?;
    let store_err = |context: String| {
        move |source| Error::Store {
            registry: client.registry.clone(),
            repository: client.repository.clone(),
            context,
            source: Box::new(source),
        }
    };

    // Which blobs to download, which layers to unpack (each once, in manifest order).
    let mut queue = VecDeque::new();
    let mut reused = Vec::new();
    let mut seen = HashSet::new();
    let mut to_unpack: Vec<(Descriptor, crate::unpack::Compression, Digest)> = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        let d = &layer.descriptor;
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        if store.has_blob(&d.digest) {
            reused.push(d.digest.clone());
            progress.blob_done(&d.digest, BlobOutcome::Exists);
        } else {
            queue.push_back(d.clone());
        }
        if let (LayerKind::Tar(c), Some(id)) = (layer.kind, diff_id)
            && txn.layer(id).is_none()
        {
            to_unpack.push((d.clone(), c, id.clone()));
        }
    }

    let cancel = AtomicBool::new(false);
    let queue = Mutex::new(queue);
    let workers = options
        .parallel
        .max(1)
        .min(queue.lock().map(|q| q.len()).unwrap_or(1));
    let mut fetched = Vec::new();
    let mut unpacked = Vec::new();
    let mut failure: Option<Error> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Result<Option<FetchedBlob>>>();
        for _ in 0..workers {
            let tx = tx.clone();
            let (client, queue, cancel, downloads) = (client, &queue, &cancel, &downloads);
            scope.spawn(move || {
                loop {
                    if cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let Some(desc) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                        break;
                    };
                    let result = download::fetch(client, &desc, downloads, cancel, progress)
                        .and_then(|f| match f {
                            Fetch::Done(path, f) => {
                                install_blob(store, &path, &desc.digest)?;
                                progress.blob_done(&desc.digest, BlobOutcome::Transferred);
                                Ok(Some(f))
                            }
                            Fetch::Cancelled => Ok(None),
                        });
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Unpack whatever is in the store, as soon as it is.
        let mut unpack_ready = |txn: &mut crate::store::Txn<'_>| -> Result<()> {
            let mut i = 0;
            while i < to_unpack.len() {
                let (d, c, id) = &to_unpack[i];
                if store.has_blob(&d.digest) {
                    txn.unpack_layer(&d.digest, *c, Some(id))
                        .map_err(store_err(format!("unpacking layer {}", d.digest)))?;
                    progress.layer_unpacked(&d.digest);
                    unpacked.push(d.digest.clone());
                    to_unpack.remove(i);
                } else {
                    i += 1;
                }
            }
            Ok(())
        };
        if let Err(e) = unpack_ready(&mut txn) {
            failure = Some(e);
            cancel.store(true, Ordering::Relaxed);
        }
        for result in rx {
            match result {
                Ok(Some(f)) => {
                    fetched.push(f);
                    if failure.is_none()
                        && let Err(e) = unpack_ready(&mut txn)
                    {
                        failure = Some(e);
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    cancel.store(true, Ordering::Relaxed);
                    failure.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some((d, _, _)) = to_unpack.first() {
        return Err(Error::Invalid {
            registry: client.registry.clone(),
            repository: client.repository.clone(),
            what: format!("layer {}", d.digest),
            reason: "its blob never arrived".to_owned(),
        });
    }
    txn.put_bytes(&config_bytes, Some(&manifest.config.digest))
        .map_err(store_err(format!(
            "storing config {}",
            manifest.config.digest
        )))?;
    txn.put_bytes(&manifest_bytes, Some(&manifest_digest))
        .map_err(store_err(format!("storing manifest {manifest_digest}")))?;
    txn.commit()
        .map_err(store_err("committing the image".to_owned()))?;
    let name = reference.store_name();
    store
        .record_image(
            &lock,
            &manifest.config.digest,
            &manifest_digest,
            name.as_slice(),
        )
        .map_err(store_err("recording the image".to_owned()))?;
    let from = if client.registry == reference.registry() {
        String::new()
    } else {
        format!(" from mirror {}", client.base())
    };
    progress.message(&format!(
        "pulled {reference}{from}: image {} (manifest {manifest_digest})",
        manifest.config.digest
    ));
    Ok(PullReport {
        id: manifest.config.digest,
        manifest: manifest_digest,
        name: name.map(|n| n.to_string()),
        fetched,
        reused,
        unpacked,
        source: String::new(),
    })
}

fn invalid(client: &Client, what: &str, e: crate::Error) -> Error {
    Error::Invalid {
        registry: client.registry.clone(),
        repository: client.repository.clone(),
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

/// `<root>/downloads`: partial downloads, kept across pulls so a broken one resumes.
fn downloads_dir(store: &Store) -> Result<PathBuf> {
    let dir = store.root().join("downloads");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .ctx("mkdir", &dir)?;
    Ok(dir)
}

/// Moves a verified, fsynced download into the content store. The caller holds the store's
/// writer lock; a blob in `blobs/` that no record names yet is complete, and gc's to reclaim.
fn install_blob(store: &Store, path: &Path, digest: &Digest) -> Result<()> {
    let dest = store.blob_path(digest);
    fs::rename(path, &dest).ctx("rename", &dest)?;
    if let Some(dir) = dest.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .ctx("fsync", dir)?;
    }
    Ok(())
}

/// The Accept header for manifests: every kind capsa reads.
fn accept() -> String {
    [
        media::OCI_MANIFEST,
        media::OCI_INDEX,
        media::DOCKER_MANIFEST,
        media::DOCKER_LIST,
    ]
    .join(", ")
}

/// GETs a small document (`manifests/<ref>` or `blobs/<digest>`), bounded in size, checking
/// its digest against `expected` and against the registry's `Docker-Content-Digest`.
/// Returns the digest, the bytes and the Content-Type.
fn fetch_small(
    client: &Client,
    path: &str,
    headers: &[(&str, String)],
    expected: Option<&Digest>,
    limit: u64,
    kind: &'static str,
) -> Result<(Digest, Vec<u8>, String)> {
    let what = format!("{kind} {}", path.rsplit('/').next().unwrap_or(path));
    let response = client.send(
        Method::GET,
        &client.repo_url(path),
        headers,
        Body::Empty,
        &what,
    )?;
    if response.status() != 200 {
        return Err(client.status_error(response, &what));
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let announced = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v).ok());
    let bytes = client.read_limited(response, limit, &what)?;
    let actual = Digest::of_bytes(&bytes);
    for want in expected.into_iter().chain(announced.as_ref()) {
        if *want != actual {
            return Err(Error::DigestMismatch {
                registry: client.registry.clone(),
                repository: client.repository.clone(),
                what: kind,
                expected: want.clone(),
                actual,
            });
        }
    }
    Ok((actual, bytes, content_type))
}

/// The single-platform manifest `reference` leads to: fetched by tag or digest, and through
/// an index (or manifest list) when it is one.
fn resolve_manifest(
    client: &Client,
    reference: &ImageRef,
    platform: Option<&Platform>,
    progress: &dyn Progress,
) -> Result<(Digest, Vec<u8>)> {
    let accept = [("Accept", accept())];
    let mut path = format!("manifests/{}", reference.manifest_ref());
    let mut expected = reference.digest().cloned();
    for _ in 0..=MAX_INDEX_DEPTH {
        let (digest, bytes, content_type) = fetch_small(
            client,
            &path,
            &accept,
            expected.as_ref(),
            MANIFEST_LIMIT,
            "manifest",
        )?;
        let what = format!("manifest {digest}");
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
                registry: client.registry.clone(),
                repository: client.repository.clone(),
                what: what.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        let media_type = value
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or(&content_type)
            .to_owned();
        if !(is_index(&media_type) || value.get("manifests").is_some()) {
            progress.message(&format!("{reference}: manifest {digest}"));
            return Ok((digest, bytes));
        }
        let entries = parse_index(&bytes, &what).map_err(|e| invalid(client, &what, e))?;
        let chosen =
            platform::choose(&entries, platform).ok_or_else(|| Error::NoMatchingPlatform {
                registry: client.registry.clone(),
                repository: client.repository.clone(),
                platform: platform
                    .map(ToString::to_string)
                    .unwrap_or_else(|| format!("{} (or wasi/wasm)", Platform::native())),
                index: digest.clone(),
                available: platform::describe(&entries),
            })?;
        progress.message(&format!(
            "{reference}: index {digest}, chose {}",
            chosen.descriptor.digest
        ));
        path = format!("manifests/{}", chosen.descriptor.digest);
        expected = Some(chosen.descriptor.digest.clone());
    }
    Err(Error::Invalid {
        registry: client.registry.clone(),
        repository: client.repository.clone(),
        what: format!("manifest {}", reference.manifest_ref()),
        reason: format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
    })
}
