//! `push`: every blob of a stored image, then its manifest. For each blob: a HEAD to see
//! whether the repository has it; else a cross-repository mount (`POST
//! …/blobs/uploads/?mount=<digest>&from=<repo>`) from the repositories the caller names;
//! else an upload session (`POST …/blobs/uploads/`), filled in one `PUT` (monolithic) or in
//! `PATCH` chunks closed by a `PUT ?digest=`. The manifest goes last, byte for byte as stored,
//! so its digest is the one the store has.

use std::fs::File;
use std::io::Read;

use ureq::http::Method;

use super::RegistryOptions;
use super::client::{Body, Client};
use super::credentials;
use super::error::{Error, Result};
use super::progress::{BlobOutcome, Progress};
use super::reference::ImageRef;
use crate::digest::Digest;
use crate::error::IoContext;
use crate::manifest::Descriptor;
use crate::store::Store;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Connection settings (insecure registries, CAs).
    pub registry: RegistryOptions,
    /// Repositories of the destination registry to mount shared blobs from, tried in order.
    pub mount_from: Vec<String>,
    /// Blobs larger than this are uploaded in `PATCH` chunks of this size; smaller ones in
    /// one `PUT`. 0: always one `PUT`.
    pub chunk_size: u64,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            registry: RegistryOptions::default(),
            mount_from: Vec::new(),
            chunk_size: 32 << 20,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// The manifest's digest (what `name@digest` pulls).
    pub manifest: Option<Digest>,
    /// Blobs uploaded.
    pub uploaded: Vec<Digest>,
    /// Blobs mounted from another repository.
    pub mounted: Vec<Digest>,
    /// Blobs the repository had already.
    pub existing: Vec<Digest>,
}

/// Pushes the stored image `source` (a name or id in `store`) to `dest`.
pub fn push(
    store: &Store,
    source: &str,
    dest: &ImageRef,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let info = store.inspect(source)?;
    let manifest_bytes = store.read_blob(&info.manifest_digest)?;
    let credentials = match &options.registry.auth {
        Some(auth) => Some(auth.credentials()),
        None => credentials::lookup(store, dest.registry())?,
    };
    let mut scopes = vec![format!("repository:{}:pull,push", dest.repository())];
    scopes.extend(
        options
            .mount_from
            .iter()
            .map(|r| format!("repository:{r}:pull")),
    );
    let client = Client::new(
        dest.registry(),
        dest.repository(),
        credentials,
        &options.registry,
        scopes,
    )?;
    let mut report = PushReport::default();
    let blobs = std::iter::once(&info.manifest.config)
        .chain(info.manifest.layers.iter().map(|l| &l.descriptor));
    for desc in blobs {
        let outcome = push_blob(&client, store, desc, options, progress)?;
        progress.blob_done(&desc.digest, outcome);
        let list = match outcome {
            BlobOutcome::Exists => &mut report.existing,
            BlobOutcome::Mounted => &mut report.mounted,
            BlobOutcome::Transferred => &mut report.uploaded,
        };
        if !list.contains(&desc.digest) {
            list.push(desc.digest.clone());
        }
    }
    let what = format!("manifest {}", dest.manifest_ref());
    let response = client.send(
        Method::PUT,
        &client.repo_url(&format!("manifests/{}", dest.manifest_ref())),
        &[("Content-Type", info.manifest.media_type.clone())],
        Body::Bytes(&manifest_bytes),
        &what,
    )?;
    if response.status() != 201 && response.status() != 200 {
        return Err(client.status_error(response, &what));
    }
    if let Some(said) = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v).ok())
        && said != info.manifest_digest
    {
        return Err(Error::DigestMismatch {
            registry: client.registry.clone(),
            repository: client.repository.clone(),
            what: "manifest",
            expected: info.manifest_digest.clone(),
            actual: said,
        });
    }
    progress.message(&format!("pushed {dest}: manifest {}", info.manifest_digest));
    report.manifest = Some(info.manifest_digest);
    Ok(report)
}

fn push_blob(
    client: &Client,
    store: &Store,
    desc: &Descriptor,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<BlobOutcome> {
    let what = format!("blob {}", desc.digest);
    let blob_url = client.repo_url(&format!("blobs/{}", desc.digest));
    let response = client.send(Method::HEAD, &blob_url, &[], Body::Empty, &what)?;
    match response.status().as_u16() {
        200 => return Ok(BlobOutcome::Exists),
        404 => {}
        _ => return Err(client.status_error(response, &what)),
    }
    let mut session = None;
    for from in &options.mount_from {
        let url = client.repo_url(&format!(
            "blobs/uploads/?mount={}&from={}",
            desc.digest,
            super::auth::encode(from)
        ));
        let response = client.send(Method::POST, &url, &[], Body::Empty, &what)?;
        match response.status().as_u16() {
            201 => return Ok(BlobOutcome::Mounted),
            // Not mountable from there: the registry opened an upload session instead (a
            // later source's session replaces it; the registry expires unused ones).
            202 => session = Some(location(client, &response, &what)?),
            _ => return Err(client.status_error(response, &what)),
        }
    }
    let mut url = match session {
        Some(url) => url,
        None => {
            let response = client.send(
                Method::POST,
                &client.repo_url("blobs/uploads/"),
                &[],
                Body::Empty,
                &what,
            )?;
            if response.status() != 202 {
                return Err(client.status_error(response, &what));
            }
            location(client, &response, &what)?
        }
    };
    let path = store.blob_path(&desc.digest);
    progress.blob_start(&desc.digest, desc.size, 0);
    let chunked = options.chunk_size > 0 && desc.size > options.chunk_size;
    if chunked {
        let mut file = File::open(&path).ctx("open", &path)?;
        let mut offset = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            (&mut file)
                .take(options.chunk_size)
                .read_to_end(&mut buf)
                .ctx("read", &path)?;
            if buf.is_empty() {
                break;
            }
            let end = offset + buf.len() as u64 - 1;
            let response = client.send(
                Method::PATCH,
                &url,
                &[
                    ("Content-Type", "application/octet-stream".to_owned()),
                    ("Content-Range", format!("{offset}-{end}")),
                ],
                Body::Bytes(&buf),
                &what,
            )?;
            if response.status() != 202 {
                return Err(client.status_error(response, &what));
            }
            url = location(client, &response, &what)?;
            offset = end + 1;
            progress.blob_progress(&desc.digest, offset);
        }
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let put_url = format!(
        "{url}{sep}digest={}",
        super::auth::encode(&desc.digest.to_string())
    );
    let response = if chunked {
        client.send(Method::PUT, &put_url, &[], Body::Empty, &what)?
    } else {
        client.send(
            Method::PUT,
            &put_url,
            &[("Content-Type", "application/octet-stream".to_owned())],
            Body::File(&path),
            &what,
        )?
    };
    if response.status() != 201 {
        return Err(client.status_error(response, &what));
    }
    progress.blob_progress(&desc.digest, desc.size);
    Ok(BlobOutcome::Transferred)
}

/// The upload session URL from a `Location` header.
fn location(
    client: &Client,
    response: &ureq::http::Response<ureq::Body>,
    what: &str,
) -> Result<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|l| client.resolve(l))
        .ok_or_else(|| Error::Invalid {
            registry: client.registry.clone(),
            repository: client.repository.clone(),
            what: what.to_owned(),
            reason: "the upload response has no Location".to_owned(),
        })
}
