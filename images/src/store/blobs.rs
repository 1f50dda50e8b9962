//! The content store: blobs under `blobs/sha256/<hex>`, named by the digest of their bytes.
//! A blob appears there only by rename from the store's `tmp/`, after its digest was checked
//! while it streamed in, so a file in `blobs/` is always complete.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher, HashingWriter};
use crate::error::{Error, IoContext, Result};

/// Copies `reader` into a new file at `tmp`, hashing as it goes; checks `expected` digest and
/// size before returning. On any error the temp file is removed.
pub(crate) fn write_verified(
    reader: &mut dyn Read,
    tmp: &Path,
    expected: Option<&Digest>,
    expected_size: Option<u64>,
) -> Result<(Digest, u64)> {
    let result = (|| {
        let file = File::create_new(tmp).ctx("create", tmp)?;
        let mut writer = HashingWriter::new(file);
        let mut buf = vec![0u8; 1 << 18];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).ctx("read", tmp),
            };
            writer.write_all(&buf[..n]).ctx("write", tmp)?;
        }
        let (_file, digest, size) = writer.finish();
        if let Some(want) = expected {
            if let Some(want_size) = expected_size
                && want_size != size
            {
                return Err(Error::SizeMismatch {
                    digest: want.clone(),
                    expected: want_size,
                    actual: size,
                });
            }
            if *want != digest {
                return Err(Error::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        Ok((digest, size))
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Reads a whole blob (manifests, configs) and checks it hashes to its name.
pub(crate) fn read_verified(path: &Path, digest: &Digest) -> Result<Vec<u8>> {
    let bytes = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::BlobNotInStore(digest.clone()),
        _ => Error::Io {
            op: "read",
            path: path.to_owned(),
            source: e,
        },
    })?;
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

/// Re-hashes a stored blob: `Store::verify_blob`.
pub(crate) fn verify_file(path: &Path, digest: &Digest) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::BlobNotInStore(digest.clone()),
        _ => Error::Io {
            op: "open",
            path: path.to_owned(),
            source: e,
        },
    })?;
    let mut writer = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut writer).ctx("read", path)?;
    let (_, actual, size) = writer.finish();
    if actual != *digest {
        return Err(Error::DigestMismatch {
            expected: digest.clone(),
            actual,
        });
    }
    Ok(size)
}

/// The digests of the blobs in `dir` (`blobs/sha256`); other names are ignored.
pub(crate) fn list(dir: &Path) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).ctx("read_dir", dir)? {
        let entry = entry.ctx("read_dir", dir)?;
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

/// `<root>/blobs/sha256/<hex>`.
pub(crate) fn path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs/sha256").join(digest.hex())
}
