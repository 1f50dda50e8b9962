//! One blob from the registry into a file, verified as it arrives, resumable.
//!
//! The bytes go to `<store root>/downloads/<hex>` (outside `tmp/`, which every writer clears,
//! so that a partial download survives a killed pull). A second attempt finds the partial
//! file, hashes what is there and asks only for the rest with `Range: bytes=N-`. Only a file
//! whose length and sha256 match the descriptor is returned; a mismatch removes the file (a
//! resumed one is then fetched once more from the start, in case the partial file was the bad
//! part). Nothing here writes into `blobs/`: the caller moves the verified file there.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ureq::http::Method;

use super::client::{Body, Client};
use super::error::{Error, Result};
use super::progress::Progress;
use crate::digest::{Digest, Hasher};
use crate::error::IoContext;
use crate::manifest::Descriptor;

/// What a download did, for reports and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBlob {
    /// The blob.
    pub digest: Digest,
    /// Bytes that were already in a partial file from an earlier attempt (0: a fresh start).
    pub resumed_from: u64,
    /// Bytes received over the network this time.
    pub received: u64,
}

/// How a download attempt ended.
pub(crate) enum Fetch {
    /// The verified file and what it took.
    Done(PathBuf, FetchedBlob),
    /// Stopped because another part of the pull failed; the partial file is kept.
    Cancelled,
}

const BUF: usize = 1 << 18;

/// Downloads `desc` into `dir/<hex>`, resuming a partial file there.
pub(crate) fn fetch(
    client: &Client,
    desc: &Descriptor,
    dir: &Path,
    cancel: &AtomicBool,
    progress: &dyn Progress,
) -> Result<Fetch> {
    let path = dir.join(desc.digest.hex());
    let mut restarted = false;
    loop {
        match attempt(client, desc, &path, cancel, progress)? {
            Attempt::Fetched(f) => return Ok(Fetch::Done(path, f)),
            Attempt::Cancelled => return Ok(Fetch::Cancelled),
            Attempt::BadResume if !restarted => {
                restarted = true;
                std::fs::remove_file(&path).ctx("unlink", &path)?;
            }
            Attempt::BadResume => unreachable_bad_resume(client, desc)?,
        }
    }
}

fn unreachable_bad_resume(client: &Client, desc: &Descriptor) -> Result<()> {
    Err(Error::Invalid {
        registry: client.registry.clone(),
        repository: client.repository.clone(),
        what: format!("blob {}", desc.digest),
        reason: "a fresh download could not be verified either".to_owned(),
    })
}

enum Attempt {
    Fetched(FetchedBlob),
    Cancelled,
    /// The content did not verify after a resume: start over once.
    BadResume,
}

fn attempt(
    client: &Client,
    desc: &Descriptor,
    path: &Path,
    cancel: &AtomicBool,
    progress: &dyn Progress,
) -> Result<Attempt> {
    let size = desc.size;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .ctx("open", path)?;
    let mut have = file.metadata().ctx("stat", path)?.len();
    if have > size {
        file.set_len(0).ctx("truncate", path)?;
        have = 0;
    }
    let mut hasher = Hasher::new();
    if have > 0 {
        hash_prefix(&mut file, have, &mut hasher, path)?;
    }
    file.seek(SeekFrom::Start(have)).ctx("seek", path)?;
    let resumed_from = have;
    let mut received = 0;
    progress.blob_start(&desc.digest, size, have);
    let what = format!("blob {}", desc.digest);
    if have < size {
        let mut headers = Vec::new();
        if have > 0 {
            headers.push(("Range", format!("bytes={have}-")));
        }
        let url = client.repo_url(&format!("blobs/{}", desc.digest));
        let response = client.send(Method::GET, &url, &headers, Body::Empty, &what)?;
        match response.status().as_u16() {
            206 if have > 0 => {
                let start = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(have) {
                    return Ok(Attempt::BadResume);
                }
            }
            200 => {
                if have > 0 {
                    // The registry ignored the range: take the whole blob again.
                    file.set_len(0).ctx("truncate", path)?;
                    file.seek(SeekFrom::Start(0)).ctx("seek", path)?;
                    hasher = Hasher::new();
                    have = 0;
                }
            }
            416 if have > 0 => return Ok(Attempt::BadResume),
            _ => return Err(client.status_error(response, &what)),
        }
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; BUF];
        loop {
            if cancel.load(Ordering::Relaxed) {
                let _ = file.sync_data();
                return Ok(Attempt::Cancelled);
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Keep what arrived: the next pull resumes from it.
                    let _ = file.sync_data();
                    return Err(client.body_error(&what, e));
                }
            };
            if have + n as u64 > size {
                drop(file);
                let _ = std::fs::remove_file(path);
                return Err(Error::SizeMismatch {
                    registry: client.registry.clone(),
                    repository: client.repository.clone(),
                    digest: desc.digest.clone(),
                    expected: size,
                    actual: have + n as u64,
                });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).ctx("write", path)?;
            have += n as u64;
            received += n as u64;
            progress.blob_progress(&desc.digest, have);
        }
    }
    if have != size {
        let _ = file.sync_data();
        return Err(Error::SizeMismatch {
            registry: client.registry.clone(),
            repository: client.repository.clone(),
            digest: desc.digest.clone(),
            expected: size,
            actual: have,
        });
    }
    let actual = hasher.finish();
    if actual != desc.digest {
        drop(file);
        std::fs::remove_file(path).ctx("unlink", path)?;
        if resumed_from > 0 {
            return Ok(Attempt::BadResume);
        }
        return Err(Error::DigestMismatch {
            registry: client.registry.clone(),
            repository: client.repository.clone(),
            what: "blob",
            expected: desc.digest.clone(),
            actual,
        });
    }
    file.sync_all().ctx("fsync", path)?;
    Ok(Attempt::Fetched(FetchedBlob {
        digest: desc.digest.clone(),
        resumed_from,
        received,
    }))
}

fn hash_prefix(file: &mut File, len: u64, hasher: &mut Hasher, path: &Path) -> Result<()> {
    file.seek(SeekFrom::Start(0)).ctx("seek", path)?;
    let mut reader = (&mut *file).take(len);
    let mut buf = vec![0u8; BUF];
    loop {
        let n = reader.read(&mut buf).ctx("read", path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(())
}
